//! `docker volume create -o key=value…`: each input line is one option
//! (`key=value`, split at the first `=`), parsed by `opts::parse`; the same
//! bytes, read by `arbitrary` as a list of pairs, make a second map, whose
//! keys and values may hold anything (`=`, newlines). Every line, key and
//! value is also read as a size (which must format and parse back to the
//! same number), a duration and a volume name; and the first bytes, as a
//! number, must survive `format_size` and `parse_size`.

#![no_main]

use std::collections::BTreeMap;

use ballast::opts;
use ballast::units::{format_size, human_size, parse_duration, parse_size};
use ballast::volume::{MAX_NAME_LEN, validate_name, validate_new_name};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fn size(s: &str) {
    if let Ok(n) = parse_size(s) {
        assert!(n > 0, "parse_size({s:?}) = 0");
        let text = format_size(n);
        assert_eq!(parse_size(&text), Ok(n), "parse_size({s:?}) = {n}, formatted as {text:?}");
        let _ = human_size(n);
    }
}

fn name(s: &str) {
    if validate_name(s).is_ok() {
        assert!((1..=MAX_NAME_LEN).contains(&s.len()), "a name of {} bytes accepted", s.len());
        assert!(s.starts_with(|c: char| c.is_ascii_alphanumeric()), "{s:?} accepted");
        assert!(
            s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')),
            "{s:?} accepted"
        );
    } else {
        assert!(validate_new_name(s).is_err(), "{s:?}: a new name but not a name");
    }
}

fn round_trip(n: u64) {
    if n == 0 {
        return;
    }
    let text = format_size(n);
    assert_eq!(parse_size(&text), Ok(n), "format_size({n}) = {text:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let n: u64 = u.arbitrary().unwrap_or(0);
    for shift in [0, 10, 20, 30, 40, 50] {
        round_trip(n.checked_shl(shift).filter(|m| m >> shift == n).unwrap_or(n));
    }

    if let Ok(pairs) = Unstructured::new(data).arbitrary::<Vec<(String, String)>>() {
        for (key, value) in &pairs {
            for s in [key, value] {
                size(s);
                name(s);
            }
        }
        check(&pairs.into_iter().collect());
    }

    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut raw = BTreeMap::new();
    for line in text.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        for s in [line, key, value] {
            size(s);
            name(s);
            let _ = parse_duration(s);
        }
        raw.insert(key.to_string(), value.to_string());
    }
    check(&raw);
});

/// `opts::parse` of one map, and what an accepted request promises.
fn check(raw: &BTreeMap<String, String>) {
    match opts::parse(raw) {
        Ok(o) => {
            for key in raw.keys() {
                assert!(opts::VALID_KEYS.contains(&key.as_str()), "unknown key {key:?} accepted");
            }
            if let Some(n) = o.size {
                assert_eq!(parse_size(&raw["size"]), Ok(n));
            }
            if let Some(mode) = o.mode {
                assert!(mode <= 0o7777, "mode {mode:o} accepted");
            }
            for id in [o.uid, o.gid].into_iter().flatten() {
                assert!(id < u32::MAX, "id {id} accepted");
            }
            for v in [&o.pool, &o.from_volume, &o.from_snapshot].into_iter().flatten() {
                assert!(!v.is_empty(), "an empty value accepted");
            }
            assert!(!(o.from_volume.is_some() && o.from_snapshot.is_some()), "two sources");
            if let Some(path) = &o.path {
                assert!(path.is_absolute(), "path {} accepted", path.display());
                assert_eq!(o.spec().size, None, "path with size");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an empty error for {raw:?}"),
    }
}
