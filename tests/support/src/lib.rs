//! Test support shared by ballast's unit tests, end-to-end tests and
//! benchmarks: deterministic data, and a real S3 server.

pub mod s3server;

/// Deterministic bytes that do not compress: a xorshift stream from `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}
