//! What a valid configuration sets up, in a few lines for an operator
//! (`ballast config check`). Credentials and passwords never appear: the
//! output ends up in terminals, tickets and CI logs.

use super::Config;
use crate::pool::BackendKind;
use crate::units;

impl Config {
    pub fn summary(&self) -> String {
        let mut out = String::from("pools:\n");
        let name_width = self.pools.iter().map(|p| p.name.len()).max().unwrap_or(0);
        for p in &self.pools {
            let mut line =
                format!("  {:name_width$}  {:5}  {}", p.name, p.backend.as_str(), p.path.display());
            if p.backend == BackendKind::Loop {
                line += &format!(
                    "  ({}, {} per volume, overcommit {})",
                    p.fs.as_str(),
                    units::format_size(p.default_size),
                    p.overcommit
                );
            }
            out += line.trim_end();
            out += "\n";
        }
        out += &format!("default pool: {}\n", self.default_pool().name);
        if self.backup_targets.is_empty() {
            out += "backup targets: none\n";
        } else {
            out += "backup targets:\n";
            let width = self.backup_targets.iter().map(|t| t.name.len()).max().unwrap_or(0);
            for t in &self.backup_targets {
                // The URL names a place, never a secret: the validation
                // takes only file:/// and s3:// (no user:password@).
                out += &format!("  {:width$}  {}", t.name, t.url);
                if let Some(endpoint) = &t.endpoint {
                    out += &format!("  (endpoint {endpoint})");
                }
                out += "\n";
            }
        }
        out += &format!(
            "trash retention: {}\n",
            units::format_duration(self.trash_retention.as_secs())
        );
        let roots: Vec<String> =
            self.host_path_roots.iter().map(|r| r.display().to_string()).collect();
        out += &format!(
            "host path roots: {}\n",
            if roots.is_empty() {
                "none (host-path volumes refused)".into()
            } else {
                roots.join(", ")
            }
        );
        let tcp = if self.admin.access_key.is_some() {
            "TCP listener allowed (credentials set)"
        } else {
            "no TCP listener (no credentials)"
        };
        out += &format!("admin: {tcp}");
        if let Some(group) = &self.admin.socket_group {
            out += &format!(", socket group {group}");
        }
        if self.admin.trust_forwarded_headers {
            out += ", forwarded headers trusted";
        }
        out += "\n";
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_summary_writes_the_default_retention_as_the_reference_does() {
        let config = Config::parse("", Path::new("/state")).unwrap();
        let reference = crate::config::reference::KEYS
            .iter()
            .find(|k| k.name == "trash_retention")
            .map(|k| match k.default {
                crate::config::reference::Omitted::Value(v) => v.trim_matches('"'),
                _ => unreachable!("trash_retention has a default"),
            })
            .unwrap();
        let summary = config.summary();
        assert!(summary.contains(&format!("trash retention: {reference}\n")), "{summary}");
    }

    #[test]
    fn the_summary_shows_pools_and_targets_and_never_a_secret() {
        let text = r#"
            trash_retention = "90m"
            [admin]
            access_key = "admin-user"
            secret_key = "admin-secret"
            [[pool]]
            name = "fast"
            backend = "loop"
            path = "/srv/fast"
            default_size = "10G"
            [[pool]]
            name = "plain"
            backend = "dir"
            default = true
            [[backup_target]]
            name = "offsite"
            url = "s3://bucket/prefix"
            access_key = "s3-access"
            secret_key = "s3-secret"
            password_file = "/etc/ballast/offsite.key"
        "#;
        let config = Config::parse(text, Path::new("/var/lib/ballast")).unwrap();
        let summary = config.summary();
        for line in [
            "  fast   loop   /srv/fast  (ext4, 10G per volume, overcommit 1)",
            "  plain  dir    /var/lib/ballast/pools/plain",
            "default pool: plain",
            "  offsite  s3://bucket/prefix",
            "trash retention: 1h30m",
            "admin: TCP listener allowed (credentials set)",
        ] {
            assert!(summary.lines().any(|l| l == line), "{line:?} in\n{summary}");
        }
        for secret in ["admin-user", "admin-secret", "s3-access", "s3-secret", "offsite.key"] {
            assert!(!summary.contains(secret), "{secret} in\n{summary}");
        }
    }
}
