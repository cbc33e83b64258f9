//! What Docker sends to the plugin socket: the first byte picks the method
//! (`'0'` to `'8'`: `docker::METHODS` in order, `'9'`: an unknown one),
//! the rest is the request body, sent through the real router.
//!
//! Every answer must be JSON of the plugin media type; a failure carries a
//! non-empty `Err` string and a success none.

#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ballast::docker::{self, MEDIA_TYPE, METHODS};
use ballast_fuzz::Fixture;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let f = Fixture::get();
        docker::router(f.ballast.clone(), f.metrics.clone())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let pick = usize::from(first.wrapping_sub(b'0')) % (METHODS.len() + 1);
    let method = METHODS.get(pick).copied().unwrap_or("VolumeDriver.Snapshot");
    let req = Request::post(format!("/{method}"))
        .body(Body::from(body.to_vec()))
        .expect("a fixed path and a byte body make a request");
    let f = Fixture::get();
    let (status, content_type, answer) = f.call(router(), req);
    assert_eq!(content_type, MEDIA_TYPE, "{method}: status {status}");
    let answer: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
        panic!("{method}: the answer is not JSON ({e}): {:?}", String::from_utf8_lossy(&answer))
    });
    let Value::Object(fields) = &answer else {
        panic!("{method}: the answer is not a JSON object: {answer}");
    };
    match fields.get("Err") {
        None => assert_eq!(status, StatusCode::OK, "{method}: a failure without Err: {answer}"),
        Some(Value::String(e)) => {
            assert!(!e.is_empty(), "{method}: an empty Err: {answer}");
            assert_ne!(status, StatusCode::OK, "{method}: Err with 200: {answer}");
        }
        Some(other) => panic!("{method}: Err is not a string: {other}"),
    }
    f.tidy();
});
