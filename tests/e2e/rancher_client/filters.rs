//! Filters with every modifier a field offers, checked against the
//! client's own reading of the full list; sorts both ways; pages of 250
//! rows and more followed to the end and back.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use serde_json::{Value, json};

use super::{Client, compare, config, data, ids, is_null, text, with_query};
use crate::harness::{Daemon, root_or_skip};

/// SQL's LIKE, as the spec describes it: `%` any run, `_` one character,
/// `\%` and `\_` themselves.
fn like(pattern: &[char], s: &[char]) -> bool {
    match pattern.split_first() {
        None => s.is_empty(),
        Some(('%', rest)) => (0..=s.len()).any(|i| like(rest, &s[i..])),
        Some(('_', rest)) => !s.is_empty() && like(rest, &s[1..]),
        Some(('\\', rest)) if !rest.is_empty() => {
            s.first() == Some(&rest[0]) && like(&rest[1..], &s[1..])
        }
        Some((c, rest)) => s.first() == Some(c) && like(rest, &s[1..]),
    }
}

/// Whether a value of type `ty` passes `{field}_{modifier}=want`, as the
/// client reads the spec: as in SQL, a null passes `null` only; `ne` and
/// `notlike` are the negations of `eq` and `like` on the other values; an
/// array passes when one of its items does (an empty one counts as null
/// for `null`, and passes the negations).
fn passes(ty: &str, v: &Value, modifier: &str, want: &str) -> bool {
    match modifier {
        "null" => return is_null(v),
        "notnull" => return !is_null(v),
        _ if v.is_null() => return false,
        "ne" => return !passes(ty, v, "eq", want),
        "notlike" => return !passes(ty, v, "like", want),
        _ => {}
    }
    if let Some(items) = v.as_array() {
        let item_ty = ty.trim_start_matches("array[").trim_end_matches(']');
        return items.iter().any(|i| passes(item_ty, i, modifier, want));
    }
    if v.is_null() {
        return false;
    }
    match modifier {
        "prefix" => return text(v).starts_with(want),
        "like" => {
            let (p, s): (Vec<char>, Vec<char>) =
                (want.chars().collect(), text(v).chars().collect());
            return like(&p, &s);
        }
        _ => {}
    }
    let wanted = match ty {
        "int" => json!(want.parse::<i64>().unwrap()),
        "boolean" => json!(want == "true"),
        _ => json!(want),
    };
    let o = compare(ty, v, &wanted);
    match modifier {
        "eq" => o.is_eq(),
        "lt" => o.is_lt(),
        "lte" => o.is_le(),
        "gt" => o.is_gt(),
        "gte" => o.is_ge(),
        m => panic!("the client does not know the modifier {m:?}"),
    }
}

/// One field's filters: for each modifier the schema lists, a query whose
/// answer must be what the client computes over `rows` (the rows such a
/// query covers), and the collection's `filters` saying what was applied.
/// At least one of them must tell rows apart.
fn check_filters(c: &mut Client, url: &str, field: &str, rows: &[Value]) {
    let schema = c.schema("volume").clone();
    let ty = text(&schema["resourceFields"][field]["type"]).to_string();
    let filter = &schema["collectionFilters"][field];
    let modifiers: Vec<String> =
        filter["modifiers"].as_array().unwrap().iter().map(|m| text(m).to_string()).collect();
    assert!(!modifiers.is_empty(), "{field}: {filter}");
    // A value from the middle of the present ones: an option when the
    // field has options, an item when it is an array.
    let mut present: Vec<Value> = rows
        .iter()
        .flat_map(|r| match &r[field] {
            Value::Array(items) => items.clone(),
            Value::Null => Vec::new(),
            v => vec![v.clone()],
        })
        .collect();
    let item_ty = ty.trim_start_matches("array[").trim_end_matches(']').to_string();
    present.sort_by(|a, b| compare(&item_ty, a, b));
    present.dedup();
    assert!(!present.is_empty(), "no {field} to filter on");
    let pick = &present[present.len() / 2];
    if let Some(options) = filter["options"].as_array() {
        assert!(options.contains(pick), "{field}: {pick} is not in {options:?}");
    }
    let pick = match pick {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let chars: Vec<char> = pick.chars().collect();
    assert!(!chars.iter().any(|c| "%_\\".contains(*c)), "{pick}");
    let prefix: String = chars[..chars.len().div_ceil(2)].iter().collect();
    let pattern = format!("{}%{}", chars[0], chars[chars.len() - 1]);
    let mut told_apart = false;
    for m in &modifiers {
        let want = match m.as_str() {
            "prefix" => prefix.clone(),
            "like" | "notlike" => pattern.clone(),
            "null" | "notnull" => String::new(),
            _ => pick.clone(),
        };
        let key = format!("{field}_{m}");
        let mut expected: Vec<String> = ids(rows)
            .into_iter()
            .zip(rows)
            .filter(|(_, r)| passes(&ty, &r[field], m, &want))
            .map(|(id, _)| id)
            .collect();
        expected.sort();
        told_apart |= !expected.is_empty() && expected.len() < rows.len();
        let mut keys = vec![key.clone()];
        if m == "eq" {
            keys.push(field.to_string());
        }
        for key in keys {
            let query = with_query(url, &[(&key, &want)]);
            let first = c.get(&query);
            assert_eq!(
                first["filters"][field],
                json!([{ "modifier": m, "value": want }]),
                "{query}: {}",
                first["filters"]
            );
            let mut got = ids(&c.all(&query));
            got.sort();
            assert_eq!(got, expected, "{query}");
        }
    }
    assert!(told_apart, "no filter on {field} told the rows apart");
}

/// The rank of each id in the collection's own id order: the order ties
/// must be broken in.
fn id_ranks(rows: &[Value]) -> HashMap<String, usize> {
    ids(rows).into_iter().enumerate().map(|(i, id)| (id, i)).collect()
}

/// `rows` are in `field`'s ascending order, ties in id order; nulls
/// together at one end.
fn check_order(rows: &[Value], field: &str, ty: &str, ranks: &HashMap<String, usize>) {
    let nulls: Vec<usize> = (0..rows.len()).filter(|i| is_null(&rows[*i][field])).collect();
    if let (Some(first), Some(last)) = (nulls.first(), nulls.last()) {
        assert_eq!(last - first + 1, nulls.len(), "nulls of {field} are not together");
        assert!(*first == 0 || *last == rows.len() - 1, "nulls of {field} are in the middle");
    }
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let by_value = match (is_null(&a[field]), is_null(&b[field])) {
            (false, false) => compare(ty, &a[field], &b[field]),
            _ => Ordering::Equal,
        };
        let by_id = ranks[text(&a["id"])].cmp(&ranks[text(&b["id"])]);
        if is_null(&a[field]) == is_null(&b[field]) {
            assert_eq!(
                by_value.then(by_id),
                Ordering::Less,
                "sorted by {field}: {} ({}) before {} ({})",
                a["id"],
                a[field],
                b["id"],
                b[field]
            );
        }
    }
}

/// Pages through `url`, `limit` rows at a time, following
/// `pagination.next` to the end; at each page `previous` and `first` must
/// lead back to the pages before. Returns the rows and the first page.
fn pages(c: &mut Client, url: &str, limit: usize) -> (Vec<Value>, Value) {
    let mut url = with_query(url, &[("limit", &limit.to_string())]);
    let mut seen: Vec<Vec<String>> = Vec::new();
    let mut rows = Vec::new();
    let mut first_page = Value::Null;
    loop {
        let page = c.get(&url);
        let p = page["pagination"].clone();
        let here = ids(data(&page));
        assert_eq!(p["limit"], limit, "{url}: {p}");
        assert!(here.len() <= limit, "{url}: {} rows", here.len());
        if seen.is_empty() {
            assert!(p.get("previous").is_none() && p.get("first").is_none(), "{url}: {p}");
            first_page = page.clone();
        } else {
            assert_eq!(p["total"], first_page["pagination"]["total"], "{url}: {p}");
            assert_eq!(ids(data(&c.get(text(&p["previous"])))), *seen.last().unwrap(), "{p}");
            assert_eq!(ids(data(&c.get(text(&p["first"])))), seen[0], "{p}");
        }
        rows.extend(data(&page).iter().cloned());
        seen.push(here);
        match p.get("next").and_then(Value::as_str) {
            Some(next) => {
                assert_eq!((seen.last().unwrap().len(), &p["partial"]), (limit, &json!(true)));
                url = next.to_string();
            }
            None => {
                assert_eq!(p["total"], rows.len(), "{url}: {p}");
                break;
            }
        }
    }
    let unique: BTreeSet<String> = ids(&rows).into_iter().collect();
    assert_eq!(unique.len(), rows.len(), "a row on two pages of {url}");
    (rows, first_page)
}

#[test]
fn a_schema_driven_client_filters_sorts_and_pages() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (d, http) = Daemon::private_with_tcp("rancher-client-list", &config(dir.path()));
    let mut c = Client::discover(http);
    let volumes = c.collection("volume");

    // 250 volumes whose names are not in the order they are made in; a
    // third left unallocated.
    let started = Instant::now();
    for i in 0..250 {
        let name = format!("v{:03}", (i * 97) % 250);
        let mut set = json!({ "name": name });
        if i % 3 == 0 {
            set["allocate"] = json!(false);
        }
        c.create("volume", set);
    }
    eprintln!("250 creates over one connection: {:?}", started.elapsed());
    // And some of every kind: on host paths, with a hard size, used by
    // containers (mounted as Docker mounts them), in the trash.
    for h in ["h1", "h2"] {
        let path = dir.path().join("roots").join(h);
        let v = c.create("volume", json!({ "name": h, "driverOpts": { "path": path } }));
        assert_eq!(v["isHostPath"], true, "{v}");
    }
    for (name, opts) in
        [("q1", json!({ "pool": "quota", "size": "32M" })), ("q2", json!({ "pool": "quota" }))]
    {
        let v = c.create("volume", json!({ "name": name, "driverOpts": opts, "allocate": false }));
        assert!(v["sizeBytes"].is_i64(), "{v}");
    }
    // (Made second and third: allocated.)
    for (name, id) in [("v097", "c1"), ("v194", "c1"), ("v194", "c2")] {
        d.call_ok("VolumeDriver.Mount", &json!({ "Name": name, "ID": id }).to_string());
    }
    for name in ["v010", "v020", "v030"] {
        let v = c.get(&with_query(&volumes, &[("name", name)]));
        c.http.ok("DELETE", text(&data(&v)[0]["links"]["self"]), None, 200);
    }

    // The full lists: the live volumes, and (a query about `state` is
    // one about the trash too) every volume.
    let live = c.all(&volumes);
    assert_eq!(live.len(), 250 + 4 - 3);
    let every = c.all(&with_query(&volumes, &[("state_notnull", "")]));
    let untrashed: Vec<&Value> = every.iter().filter(|v| v["removed"].is_null()).collect();
    assert_eq!(ids(&live), ids(&untrashed.into_iter().cloned().collect::<Vec<_>>()));
    assert_eq!(every.len(), live.len() + 3);

    // Each modifier of fields of every kind: a string, an int, an enum,
    // a boolean, an array, a date, and nullable ones.
    let started = Instant::now();
    for field in
        ["name", "createdTS", "state", "isHostPath", "mountIds", "created", "sizeBytes", "removed"]
    {
        let rows = if ["state", "removed"].contains(&field) { &every } else { &live };
        check_filters(&mut c, &volumes, field, rows);
    }
    // Filters AND.
    let both = with_query(&volumes, &[("name_prefix", "v0"), ("state", "requested")]);
    let mut expected: Vec<String> = live
        .iter()
        .filter(|v| text(&v["name"]).starts_with("v0") && v["state"] == "requested")
        .map(|v| text(&v["id"]).to_string())
        .collect();
    expected.sort();
    let mut got = ids(&c.all(&both));
    got.sort();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    eprintln!("filters: {:?}", started.elapsed());

    // Pages in the collection's own sort, and in the sorts its sortLinks
    // offer, both ways: every volume once, in order, ties by id.
    let started = Instant::now();
    let first = c.get(&volumes);
    let sort_links = first["sortLinks"].as_object().unwrap().clone();
    let (by_id, _) = pages(&mut c, text(&sort_links["id"]), 40);
    let ranks = id_ranks(&by_id);
    let default_sort = text(&first["sort"]["name"]).to_string();
    let mut sorts = vec![(default_sort, volumes.clone())];
    for field in ["name", "usedBytes", "createdTS", "created", "sizeBytes"] {
        sorts.push((field.to_string(), text(&sort_links[field]).to_string()));
    }
    for (field, url) in sorts {
        let ty = text(&c.schema("volume")["resourceFields"][field.as_str()]["type"]).to_string();
        let (rows, first) = pages(&mut c, &url, 40);
        assert_eq!(
            ids(&rows).into_iter().collect::<BTreeSet<_>>(),
            ids(&live).into_iter().collect()
        );
        assert_eq!(
            (text(&first["sort"]["name"]), text(&first["sort"]["order"])),
            (field.as_str(), "asc")
        );
        check_order(&rows, &field, &ty, &ranks);
        let (back, back_first) = pages(&mut c, text(&first["sort"]["reverse"]), 40);
        assert_eq!(back_first["sort"]["order"], "desc");
        let mut reversed = ids(&rows);
        reversed.reverse();
        assert_eq!(ids(&back), reversed, "{field} reversed");
    }
    eprintln!("pages: {:?}", started.elapsed());
}
