//! Tables, sizes, and the wait for long operations.

use std::io::IsTerminal;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;

use super::{Client, Global};

/// Prints rows under a header, columns padded to fit.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

/// Prints a collection's `data`: as JSON with `--json`, else as a table
/// with one row per resource.
pub fn list(
    global: &Global,
    collection: &Value,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) {
    if global.json {
        println!("{}", serde_json::to_string_pretty(&collection["data"]).unwrap_or_default());
        return;
    }
    table(header, collection["data"].as_array().into_iter().flatten().map(row).collect());
}

/// A field as text for a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Bytes in binary units, for people.
pub fn size(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), crate::units::human_size)
}

/// Prints one resource: JSON with `--json`, else `what` (a short line).
pub fn done(global: &Global, resource: &Value, what: String) {
    if global.json {
        println!("{}", serde_json::to_string_pretty(resource).unwrap_or_default());
    } else {
        println!("{what}");
    }
}

/// Follows a resource until it stops transitioning, with a progress bar
/// on a terminal; returns its final form, or its error message.
pub async fn wait(
    client: &Client,
    global: &Global,
    path: &str,
    mut resource: Value,
) -> Result<Value, String> {
    if global.no_wait {
        return Ok(resource);
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut pause = Duration::from_millis(10);
    while resource["transitioning"] == "yes" {
        if let Some(bar) = &bar {
            bar.set_message(cell(&resource["transitioningMessage"]));
        }
        // Short jobs end within a few polls; long ones are polled less.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
        resource = client.call(Method::GET, path, None).await?;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if resource["transitioning"] == "error" {
        return Err(cell(&resource["transitioningMessage"]));
    }
    Ok(resource)
}
