//! Public ids, Rancher style: a kind's prefix and the row's id (`1v7`,
//! `1s42`, `1b3`). The one place that knows the prefixes: records, the
//! core, the adapters and the CLI print and read ids through it.

/// What a public id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Volume,
    Snapshot,
    Backup,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Volume, Kind::Snapshot, Kind::Backup];

    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Volume => "1v",
            Kind::Snapshot => "1s",
            Kind::Backup => "1b",
        }
    }

    /// The public id of row `id`: `1v7`.
    pub fn id(self, id: i64) -> String {
        format!("{}{id}", self.prefix())
    }

    /// The row id that `s` names, if `s` is a public id of this kind
    /// (the prefix, then decimal digits only).
    pub fn parse(self, s: &str) -> Option<i64> {
        let n = s.strip_prefix(self.prefix())?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
    }

    /// Whether `s` has the shape of a public id of this kind, however
    /// large its number (a name must not, see `volume.rs`).
    pub fn shapes(self, s: &str) -> bool {
        s.strip_prefix(self.prefix())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// Whether `s` has the shape of any kind's public id.
pub fn looks_like_id(s: &str) -> bool {
    Kind::ALL.iter().any(|k| k.shapes(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_read_back_and_nothing_else_reads() {
        assert_eq!(Kind::Snapshot.id(42), "1s42");
        assert_eq!(Kind::Snapshot.parse("1s42"), Some(42));
        assert_eq!(Kind::Volume.parse("1v7"), Some(7));
        for bad in ["1s", "1v7", "s42", "1s4x", "1s-1", ""] {
            assert_eq!(Kind::Snapshot.parse(bad), None, "{bad}");
        }
        assert!(looks_like_id("1b99999999999999999999"), "too large to parse, still an id's shape");
        assert!(!looks_like_id("db"));
    }
}
