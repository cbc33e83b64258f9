//! A client that knows nothing of ballast but the root URL and Rancher's
//! API spec. It finds the version root and the schemas from the answers
//! (`links.latest`, `X-API-Schemas`), and from the schemas alone (each
//! type's collection link, `resourceFields`, methods, `resourceActions`
//! and `collectionFilters`) it creates volumes, filters them with every
//! modifier a field offers and checks the answers against its own reading
//! of the full list, pages through 250 and more in several sorts, both
//! ways, updates one by sending back what it read, walks one through every
//! action the schema lists, and provokes each kind of error the spec
//! describes. Every answer must carry `X-API-Schemas`, every failure an
//! error resource, and every resource only fields its schema declares,
//! with values of the declared types.
//!
//! It talks over TCP with basic auth rather than the Unix socket: links
//! are then real URLs, on the address the client reached, that it follows
//! exactly as given.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::backup::{repo_in, target};
use crate::harness::{Daemon, Http, root_or_skip};

struct Client {
    http: Http,
    schemas: BTreeMap<String, Value>,
    /// Where each type is created, from its collection's `createTypes`.
    create_at: HashMap<String, String>,
    /// Names made up so far.
    made: usize,
    /// Action URLs POSTed again once no longer offered, and refused.
    stale_refused: usize,
}

/// `url` with `pairs` added to its query.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", q.finish())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| text(&r["id"]).to_string()).collect()
}

fn data(collection: &Value) -> &Vec<Value> {
    collection["data"].as_array().unwrap_or_else(|| panic!("no data: {collection}"))
}

/// Whether `c` is in a `validChars` set (ranges like `a-z`, a `-` first
/// or last is itself).
fn valid_char(set: &str, c: char) -> bool {
    let set: Vec<char> = set.chars().collect();
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

fn date(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?} is not a date: {e}"))
}

/// Two non-null values of a field of type `ty`, in the field's own order:
/// numbers as numbers, dates in time, strings by their characters.
fn compare(ty: &str, a: &Value, b: &Value) -> Ordering {
    match ty {
        "int" => a.as_i64().unwrap().cmp(&b.as_i64().unwrap()),
        "boolean" => a.as_bool().unwrap().cmp(&b.as_bool().unwrap()),
        "date" => date(text(a)).cmp(&date(text(b))),
        _ => text(a).cmp(text(b)),
    }
}

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

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
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

impl Client {
    /// Starts from the root URL alone: `links.latest` is the version root,
    /// and its `X-API-Schemas` the schemas.
    fn discover(mut http: Http) -> Client {
        let root = format!("{}/", http.base());
        let versions = http.get(&root);
        assert_eq!(versions["type"], "collection", "{versions}");
        let latest = text(&versions["links"]["latest"]).to_string();
        let answer = http.send("GET", &latest, &[], b"");
        let version = http.spec_body(&latest, &answer);
        assert_eq!(
            (answer.status, version["type"].as_str()),
            (200, Some("apiVersion")),
            "{version}"
        );
        let schemas_url = answer.header("x-api-schemas").unwrap().to_string();
        let all = http.get(&schemas_url);
        assert!(
            all["links"].as_object().unwrap().values().any(|l| *l == latest),
            "the schemas link back to the version root: {}",
            all["links"]
        );
        let mut schemas = BTreeMap::new();
        for s in data(&all) {
            assert_eq!(s["type"], "schema", "{s}");
            assert_eq!(http.get(text(&s["links"]["self"])), *s);
            schemas.insert(text(&s["id"]).to_string(), s.clone());
        }
        // Every collection the version root links to is some type's.
        for (name, link) in version["links"].as_object().unwrap() {
            let typed = schemas.values().any(|s| s["links"]["collection"] == *link);
            assert!(
                typed || ["self", "openapi", "schemas"].contains(&name.as_str()),
                "{name}: {link}"
            );
        }
        Client { http, schemas, create_at: HashMap::new(), made: 0, stale_refused: 0 }
    }

    fn schema(&self, id: &str) -> &Value {
        self.schemas.get(id).unwrap_or_else(|| panic!("no schema {id:?}"))
    }

    fn fields(&self, id: &str) -> Map<String, Value> {
        self.schema(id)["resourceFields"].as_object().unwrap().clone()
    }

    fn collection(&self, id: &str) -> String {
        text(&self.schema(id)["links"]["collection"]).to_string()
    }

    fn get(&mut self, url: &str) -> Value {
        let v = self.http.get(url);
        self.check(&v);
        v
    }

    /// A resource (or each resource of a collection) has a type with a
    /// schema, and only fields that schema declares, of the declared
    /// types.
    fn check(&self, v: &Value) {
        if v["type"] == "collection" {
            data(v).iter().for_each(|r| self.check(r));
            return;
        }
        let fields = self.fields(text(&v["type"]));
        for (name, value) in v.as_object().unwrap() {
            if name == "links" || name == "actions" {
                continue;
            }
            let f = fields.get(name).unwrap_or_else(|| panic!("{name} is not in the schema: {v}"));
            if value.is_null() {
                assert_eq!(f["nullable"], true, "{name} is null: {v}");
                continue;
            }
            let ty = text(&f["type"]);
            let ok = match ty {
                "string" => value.is_string(),
                "int" => value.is_i64(),
                "boolean" => value.is_boolean(),
                "date" => {
                    value.as_str().is_some_and(|s| OffsetDateTime::parse(s, &Rfc3339).is_ok())
                }
                "enum" => f["options"].as_array().unwrap().contains(value),
                "map[string]" => {
                    value.as_object().is_some_and(|m| m.values().all(Value::is_string))
                }
                "array[string]" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                t if t.starts_with("reference[") => value.is_string(),
                t => value.is_object() && self.schemas.contains_key(t),
            };
            assert!(ok, "{name} is not a {ty}: {v}");
        }
    }

    /// Every resource of the collection at `url`, following
    /// `pagination.next`.
    fn all(&mut self, url: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut next = Some(url.to_string());
        while let Some(url) = next {
            let page = self.get(&url);
            rows.extend(data(&page).iter().cloned());
            next = page["pagination"]["next"].as_str().map(str::to_string);
        }
        let unique: BTreeSet<String> = ids(&rows).into_iter().collect();
        assert_eq!(unique.len(), rows.len(), "a row twice in {url}");
        rows
    }

    /// A value for a field that must have one: what its type, options and
    /// constraints allow.
    fn value_for(&mut self, name: &str, f: &Value) -> Value {
        let ty = text(&f["type"]);
        if let Some(options) = f["options"].as_array() {
            return options[0].clone();
        }
        match ty {
            "string" => {
                self.made += 1;
                let mut s = format!("made{}", self.made);
                let min =
                    f["minLength"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
                while s.len() < min {
                    s.push('0');
                }
                if let Some(valid) = f["validChars"].as_str() {
                    assert!(s.chars().all(|c| valid_char(valid, c)), "{name}: {s} vs {valid}");
                }
                assert!(f["maxLength"].as_u64().is_none_or(|m| s.len() as u64 <= m));
                json!(s)
            }
            "int" => json!(f["min"].as_i64().unwrap_or(0)),
            "boolean" => json!(false),
            "map[string]" => json!({}),
            "array[string]" => json!([]),
            t if t.starts_with("reference[") => {
                let of = t.trim_start_matches("reference[").trim_end_matches(']');
                let url = self.collection(of);
                let first = self.all(&url).into_iter().next();
                first.unwrap_or_else(|| panic!("{name}: no {of} to refer to"))["id"].clone()
            }
            t => panic!("{name}: the client cannot make a {t}"),
        }
    }

    /// The body of a create (or an action's input) of type `ty`: `set`,
    /// then every `create` field with a default, then a value for every
    /// required one left. `set` is the user's data: `create` fields only,
    /// within their options.
    fn body(&mut self, ty: &str, set: &Value) -> Value {
        let fields = self.fields(ty);
        let mut body = Map::new();
        for (name, value) in set.as_object().unwrap() {
            let f = &fields[name];
            assert_eq!(f["create"], true, "{ty}.{name} cannot be set on create");
            if let Some(options) = f["options"].as_array() {
                assert!(options.contains(value), "{ty}.{name}: {value} is not in {options:?}");
            }
            body.insert(name.clone(), value.clone());
        }
        for (name, f) in &fields {
            if f["create"] != true || body.contains_key(name) {
                continue;
            }
            if let Some(default) = f.get("default") {
                body.insert(name.clone(), default.clone());
            } else if f["required"] == true {
                let v = self.value_for(name, f);
                body.insert(name.clone(), v);
            }
        }
        Value::Object(body)
    }

    /// Where a `ty` is created: its collection's `createTypes` say.
    fn create_url(&mut self, ty: &str) -> String {
        if !self.create_at.contains_key(ty) {
            let methods = &self.schema(ty)["collectionMethods"];
            assert!(methods.as_array().unwrap().contains(&json!("POST")), "{ty}: {methods}");
            // The collection's metadata alone: `limit=0`.
            let meta = self.get(&with_query(&self.collection(ty), &[("limit", "0")]));
            assert_eq!(data(&meta).len(), 0, "{meta}");
            let url = text(&meta["createTypes"][ty]).to_string();
            self.create_at.insert(ty.to_string(), url);
        }
        self.create_at[ty].clone()
    }

    /// Creates a `ty` from [`Client::body`]; returns it.
    fn create(&mut self, ty: &str, set: Value) -> Value {
        let body = self.body(ty, &set);
        let url = self.create_url(ty);
        let made = self.http.ok("POST", &url, Some(&body), 201);
        self.check(&made);
        for (name, sent) in body.as_object().unwrap() {
            if let Some(got) = made.get(name) {
                assert_eq!(got, sent, "{ty}.{name}: {made}");
            }
        }
        made
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

fn config(dir: &std::path::Path) -> String {
    let (repo, key) = repo_in(dir);
    let roots = dir.join("roots");
    std::fs::create_dir_all(roots.join("h1")).unwrap();
    std::fs::create_dir_all(roots.join("h2")).unwrap();
    std::fs::create_dir_all(dir.join("pools")).unwrap();
    format!(
        "host_path_roots = [\"{roots}\"]\n\n\
         [[pool]]\nname = \"default\"\nbackend = \"dir\"\npath = \"{dir}/pools/default\"\ndefault = true\n\n\
         [[pool]]\nname = \"quota\"\nbackend = \"loop\"\npath = \"{dir}/pools/quota\"\ndefault_size = \"64M\"\n\n{}",
        target("nas", &repo, &key, ""),
        roots = roots.display(),
        dir = dir.display(),
    )
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

/// The route a volume takes through every action: each must be in the
/// volume's `actions` map when its turn comes, and the volume ends in the
/// state that docs/design.md's state table gives. `backup` is the
/// snapshot's action (restore and deallocate need a backup newer than the
/// last write).
const ROUTE: [(&str, &str); 13] = [
    ("allocate", "inactive"),
    ("activate", "active"),
    ("deactivate", "inactive"),
    ("snapshot", "inactive"),
    ("reverttosnapshot", "inactive"),
    ("snapshot", "inactive"),
    ("backup", "inactive"),
    ("deallocate", "requested"),
    ("restorefrombackup", "inactive"),
    ("remove", "removed"),
    ("restore", "inactive"),
    ("remove", "removed"),
    ("purge", "purged"),
];

impl Client {
    /// The newest settled resource of type `ty` among the collections
    /// `resource` links to.
    fn related(&mut self, resource: &Value, ty: &str) -> Value {
        let mut found: Vec<Value> = Vec::new();
        for link in resource["links"].as_object().unwrap().values() {
            let v = self.get(text(link));
            if v["type"] == "collection" && v["resourceType"] == ty {
                found.extend(data(&v).iter().filter(|r| r["transitioning"] == "no").cloned());
            }
        }
        found.sort_by(|a, b| compare("date", &a["created"], &b["created"]));
        found.pop().unwrap_or_else(|| panic!("no {ty} linked from {resource}"))
    }

    /// An action's input from its input schema: defaults, and for a
    /// required reference the newest resource of that type that
    /// `resource` links to.
    fn input(&mut self, resource: &Value, input: &str) -> Value {
        let mut body = Map::new();
        for (name, f) in self.fields(input) {
            if f["create"] != true {
                continue;
            }
            let ty = text(&f["type"]);
            if let Some(default) = f.get("default") {
                body.insert(name, default.clone());
            } else if f["required"] == true {
                let v = match ty.strip_prefix("reference[") {
                    Some(of) => self.related(resource, of.trim_end_matches(']'))["id"].clone(),
                    None => self.value_for(&name, &f),
                };
                body.insert(name, v);
            }
        }
        Value::Object(body)
    }

    /// Runs `action` of `resource` at the URL its `actions` map gives,
    /// with an input built from the schema, and waits for the output to
    /// settle. Returns the output settled; a second POST of the same URL,
    /// when the action is no longer offered, is refused.
    fn act(&mut self, resource: &Value, action: &str) -> Value {
        let ty = text(&resource["type"]).to_string();
        let def = self.schema(&ty)["resourceActions"][action].clone();
        assert!(def.is_object(), "{ty} has no action {action}");
        let url = resource["actions"][action]
            .as_str()
            .unwrap_or_else(|| panic!("{action} is not offered: {}", resource["actions"]))
            .to_string();
        let body = match def["input"].as_str() {
            Some(input) => self.input(resource, input),
            None => json!({}),
        };
        let (status, out) = self.http.call("POST", &url, Some(&body));
        assert!(status == 200 || status == 202, "{action} {body}: {status} {out}");
        assert_eq!(out["type"], def["output"], "{action}: {out}");
        let out = self.http.settle(text(&out["links"]["self"]));
        self.check(&out);
        assert_eq!(out["transitioning"], "no", "{action}: {out}");
        let now = self.get(text(&resource["links"]["self"]));
        if now["actions"].get(action).is_none() {
            let (status, v) = self.http.call("POST", &url, Some(&body));
            assert_eq!((status, v["code"].as_str()), (409, Some("ActionNotAvailable")), "{v}");
            self.stale_refused += 1;
        }
        out
    }
}

#[test]
fn a_schema_driven_client_updates_runs_every_action_and_reads_errors() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_d, http) = Daemon::private_with_tcp("rancher-client-act", &config(dir.path()));
    let mut c = Client::discover(http);
    let volumes = c.collection("volume");
    let fields = c.fields("volume");

    // A create of the required fields without defaults alone: the
    // others take their defaults.
    let create_url = c.create_url("volume");
    let mut body = c.body("volume", &json!({}));
    let defaults: Vec<&String> =
        fields.keys().filter(|n| fields[*n].get("default").is_some()).collect();
    for name in &defaults {
        body.as_object_mut().unwrap().remove(name.as_str());
    }
    let v = c.http.ok("POST", &create_url, Some(&body), 201);
    let shown: Vec<&&String> = defaults.iter().filter(|n| v.get(n.as_str()).is_some()).collect();
    assert!(!shown.is_empty(), "{defaults:?}");
    for name in shown {
        assert_eq!(v[name.as_str()], fields[name.as_str()]["default"], "{name}");
    }

    // An update sends back the whole resource as read, with the
    // updatable text fields changed: those change and nothing else.
    let methods = c.schema("volume")["resourceMethods"].clone();
    assert!(methods.as_array().unwrap().contains(&json!("PUT")), "{methods}");
    let url = text(&v["links"]["self"]).to_string();
    let before = c.get(&url);
    let mut changed = before.clone();
    let updatable: Vec<&String> = fields
        .iter()
        .filter(|(_, f)| f["update"] == true && f["type"] == "string")
        .map(|(n, _)| n)
        .collect();
    assert!(!updatable.is_empty());
    for name in &updatable {
        changed[name.as_str()] = json!(format!("{name} changed by the client"));
    }
    let answer = c.http.ok("PUT", &url, Some(&changed), 200);
    let after = c.get(&url);
    assert_eq!(answer, after);
    assert_eq!(after, changed, "only the updatable fields changed");

    // Every action of the schema, along a route through the states.
    let started = Instant::now();
    let mut vol = c.create("volume", json!({ "name": "walker", "allocate": false }));
    let vurl = text(&vol["links"]["self"]).to_string();
    let mut done = BTreeSet::new();
    for (action, state) in ROUTE {
        let offered: BTreeSet<&String> = vol["actions"].as_object().unwrap().keys().collect();
        let declared = c.schema("volume")["resourceActions"].as_object().unwrap().clone();
        assert!(offered.iter().all(|a| declared.contains_key(*a)), "{offered:?}");
        if action == "backup" {
            let snap = c.related(&vol, "snapshot");
            let b = c.act(&snap, "backup");
            assert_eq!(b["state"], "created", "{b}");
        } else {
            c.act(&vol, action);
            done.insert(action);
        }
        vol = c.http.settle(&vurl);
        assert_eq!(
            (text(&vol["state"]), text(&vol["transitioning"])),
            (state, "no"),
            "after {action}"
        );
    }
    let declared: BTreeSet<&str> = c.schema("volume")["resourceActions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(done, declared, "the route ran every action the schema lists");
    eprintln!("the action route: {:?}", started.elapsed());

    assert!(c.stale_refused >= 5, "{} stale action URLs refused", c.stale_refused);

    // Errors, each of the kind the spec's codes name: a required field
    // left out, a value outside a field's options.
    let good = c.body("volume", &json!({}));
    let mut refused = BTreeSet::new();
    for (name, f) in &fields {
        if f["create"] == true && f["required"] == true && f.get("default").is_none() {
            let mut body = good.clone();
            body.as_object_mut().unwrap().remove(name);
            let (status, e) = c.http.call("POST", &create_url, Some(&body));
            assert_eq!(
                (status, &e["code"], &e["fieldName"]),
                (422, &json!("MissingRequired"), &json!(name))
            );
            refused.insert("MissingRequired");
        }
        if let Some(options) = f["options"].as_array().filter(|_| f["create"] == true) {
            let wrong: Vec<&str> = options.iter().map(text).collect();
            let mut body = good.clone();
            body[name] = json!(format!("not-{}", wrong.join("-")));
            let (status, e) = c.http.call("POST", &create_url, Some(&body));
            assert_eq!(
                (status, &e["code"], &e["fieldName"]),
                (422, &json!("InvalidOption"), &json!(name))
            );
            assert!(wrong.iter().all(|o| text(&e["message"]).contains(o)), "{e}");
            refused.insert("InvalidOption");
        }
    }
    assert_eq!(refused, BTreeSet::from(["InvalidOption", "MissingRequired"]));
    assert_eq!(c.all(&volumes).len(), 1, "no refused create made a volume");

    // Filters the schema does not offer: an unknown field, a modifier the
    // field does not take, a value outside the field's options.
    let filters = c.schema("volume")["collectionFilters"].clone();
    assert!(filters.get("colour").is_none());
    let (status, e) = c.http.call("GET", &with_query(&volumes, &[("colour", "red")]), None);
    assert_eq!((status, &e["fieldName"]), (422, &json!("colour")), "{e}");
    let (field, _) = filters
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, f)| !f["modifiers"].as_array().unwrap().contains(&json!("like")))
        .unwrap();
    let key = format!("{field}_like");
    let (status, e) = c.http.call("GET", &with_query(&volumes, &[(&key, "x%")]), None);
    assert_eq!((status, &e["fieldName"]), (422, &json!(key)), "{e}");
    let (field, _) =
        filters.as_object().unwrap().iter().find(|(_, f)| f["options"].is_array()).unwrap();
    let (status, e) = c.http.call("GET", &with_query(&volumes, &[(field, "no-such-option")]), None);
    assert_eq!(
        (status, &e["code"], &e["fieldName"]),
        (422, &json!("InvalidOption"), &json!(field)),
        "{e}"
    );
    // (The one URL the client makes up: a volume's own with another id.)
    let missing = format!("{}/no-such-volume", url.rsplit_once('/').unwrap().0);
    let (status, e) = c.http.call("GET", &missing, None);
    assert_eq!((status, &e["code"]), (404, &json!("NotFound")), "{e}");

    // A method a type's schema does not list, on its collection or on one
    // of its resources, is a 405 whose Allow header lists those it does.
    let types: Vec<String> = c.schemas.keys().cloned().collect();
    let mut not_allowed = 0;
    for id in types {
        let s = c.schema(&id).clone();
        let Some(collection) = s["links"]["collection"].as_str() else { continue };
        let listed = |key: &str| -> Vec<String> {
            s[key].as_array().unwrap().iter().map(|m| text(m).to_string()).collect()
        };
        let one = data(&c.get(collection)).first().map(|r| text(&r["links"]["self"]).to_string());
        // (A resource takes POST for its actions.)
        let mut targets = vec![(collection.to_string(), listed("collectionMethods"), false)];
        targets.extend(one.map(|url| (url, listed("resourceMethods"), true)));
        for (url, methods, actions) in targets {
            for m in ["GET", "POST", "PUT", "DELETE"] {
                if methods.iter().any(|x| x == m) || (m == "POST" && actions) {
                    continue;
                }
                let a = c.http.send(m, &url, &[], b"");
                let e = c.http.spec_body(&format!("{m} {url}"), &a);
                assert_eq!(
                    (a.status, &e["code"]),
                    (405, &json!("MethodNotAllowed")),
                    "{m} {url}: {e}"
                );
                let allow: Vec<&str> =
                    a.header("allow").unwrap().split(',').map(str::trim).collect();
                assert!(!allow.contains(&m), "{m} {url}: {allow:?}");
                assert!(
                    methods.iter().all(|x| allow.contains(&x.as_str())),
                    "{url}: {allow:?} vs {methods:?}"
                );
                not_allowed += 1;
            }
        }
    }
    assert!(not_allowed >= 10, "only {not_allowed} methods tried");
}

/// A volume as Rancher's typed Go client declares it (the fields it
/// shares with this API): a reference is a string, a date a string, a
/// progress an integer; Go decodes a JSON null into any of them as the
/// zero value, so those that may be null are options here, and anything
/// else of another type (a list where a string is declared) fails the
/// whole decode.
#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct GoVolume {
    id: String,
    #[serde(rename = "type")]
    ty: String,
    kind: String,
    uuid: String,
    name: String,
    state: String,
    description: String,
    driver: String,
    driver_opts: BTreeMap<String, String>,
    external_id: String,
    image_id: Option<String>,
    instance_id: Option<String>,
    is_host_path: bool,
    uri: Option<String>,
    access_mode: String,
    created: Option<String>,
    removed: Option<String>,
    remove_time: Option<String>,
    transitioning: String,
    transitioning_message: String,
    transitioning_progress: Option<i64>,
    links: BTreeMap<String, String>,
    actions: BTreeMap<String, String>,
}

/// The common fields Rancher's typed clients read on every resource.
#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct GoResource {
    id: String,
    kind: String,
    uuid: String,
    remove_time: Option<String>,
    transitioning_progress: Option<i64>,
}

fn go_volume(d: &Daemon, id: &str) -> GoVolume {
    let v = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("Go's client fails on {v}: {e}"))
}

#[test]
fn volumes_decode_into_the_types_of_rancher_s_go_client_mounted_or_not() {
    if !root_or_skip() {
        return;
    }
    let mut d = Daemon::private_with("typed-go", "trash_retention = \"1h\"\n");
    let made = d.admin_ok("POST", "/v1/volumes", json!({ "name": "typed-go-a" }), 201);
    let id = text(&made["id"]).to_string();
    let other = d.admin_ok("POST", "/v1/volumes", json!({ "name": "typed-go-b" }), 201);

    let v = go_volume(&d, &id);
    assert_eq!((v.ty.as_str(), v.kind.as_str()), ("volume", "volume"));
    assert_eq!((v.instance_id, v.image_id, v.remove_time), (None, None, None));
    assert_eq!((v.transitioning.as_str(), v.transitioning_progress), ("no", None));
    assert_ne!(v.uuid, text(&other["uuid"]), "each volume has its own uuid");
    let by_uuid = d.admin_ok("GET", &format!("/v1/volumes?uuid={}", v.uuid), Value::Null, 200);
    assert_eq!(ids(data(&by_uuid)), [id.as_str()], "a uuid finds its volume");

    // Two containers: the seed's one instance is the first, and every
    // mount ID is in `mountIds`.
    for mount in ["c2-second", "c1-first"] {
        d.call_ok("VolumeDriver.Mount", &json!({ "Name": "typed-go-a", "ID": mount }).to_string());
    }
    let mounted = go_volume(&d, &id);
    assert_eq!(mounted.instance_id.as_deref(), Some("c1-first"));
    let raw = d.admin_ok("GET", &format!("/v1/volumes/{id}"), Value::Null, 200);
    assert_eq!(raw["mountIds"], json!(["c1-first", "c2-second"]), "{raw}");
    let one = d.admin_ok("GET", "/v1/volumes?instanceId=c1-first", Value::Null, 200);
    assert_eq!(ids(data(&one)), [id.as_str()]);
    let listed = d.admin_ok("GET", "/v1/volumes?mountIds=c2-second", Value::Null, 200);
    assert_eq!(ids(data(&listed)), [id.as_str()]);
    for mount in ["c2-second", "c1-first"] {
        let body = json!({ "Name": "typed-go-a", "ID": mount }).to_string();
        d.call_ok("VolumeDriver.Unmount", &body);
    }

    // The uuid survives a restart of the daemon.
    d.restart();
    assert_eq!(go_volume(&d, &id).uuid, v.uuid, "the uuid changed across a restart");

    // In the trash, `removeTime` says when the purge comes.
    d.admin_ok("POST", &format!("/v1/volumes/{id}?action=remove"), Value::Null, 200);
    let removed = go_volume(&d, &id);
    let (at, purge) = (date(&removed.removed.unwrap()), date(&removed.remove_time.unwrap()));
    assert_eq!(purge - at, time::Duration::hours(1), "removeTime is removed + the retention");

    // A snapshot's common fields decode too, with its own uuid.
    let snap = d.admin_ok(
        "POST",
        &format!("/v1/volumes/{}?action=snapshot", text(&other["id"])),
        json!({}),
        202,
    );
    let snap = d.settle(&format!("/v1/snapshots/{}", text(&snap["id"])));
    let s: GoResource = serde_json::from_value(snap.clone()).unwrap();
    assert_eq!(
        (s.kind.as_str(), s.remove_time, s.transitioning_progress),
        ("snapshot", None, None)
    );
    assert_eq!(s.id, text(&snap["id"]));
    assert!(![v.uuid.as_str(), text(&other["uuid"])].contains(&s.uuid.as_str()), "{snap}");
}
