//! Arbitrary text as the configuration file: `Config::parse` answers Ok or
//! Err and never panics; what it accepts keeps its promises (exactly one
//! default pool, valid and distinct names, absolute pool paths).

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use ballast::config::Config;
use ballast::volume::validate_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::parse(text, Path::new("/var/lib/ballast")) else { return };
    assert_eq!(config.pools.iter().filter(|p| p.default).count(), 1, "{text:?}");
    let _ = config.default_pool();
    let mut names = HashSet::new();
    for p in &config.pools {
        assert!(validate_name(&p.name).is_ok(), "pool name {:?} accepted", p.name);
        assert!(names.insert(&p.name), "two pools named {:?}", p.name);
        assert!(p.path.is_absolute(), "pool path {} accepted", p.path.display());
        assert!(p.overcommit.is_finite() && p.overcommit > 0.0, "overcommit {}", p.overcommit);
        assert!(p.default_size > 0, "a zero default_size accepted");
    }
    let mut targets = HashSet::new();
    for t in &config.backup_targets {
        assert!(validate_name(&t.name).is_ok(), "backup target name {:?} accepted", t.name);
        assert!(targets.insert(&t.name), "two backup targets named {:?}", t.name);
    }
    assert_eq!(config.admin.access_key.is_some(), config.admin.secret_key.is_some());
});
