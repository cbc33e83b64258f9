use serde_json::json;

use super::like::like;
use super::*;
use crate::admin::schema::types::VOLUME;

fn rows() -> Vec<Value> {
    (1..=25)
        .map(|i| {
            json!({
                "id": format!("1v{i}"),
                "name": format!("vol-{:02}", i % 10),
                "state": if i % 3 == 0 { "active" } else { "inactive" },
                "usedBytes": i * 100,
                "isHostPath": i == 7,
                "mountIds": if i == 5 { json!(["c1", "c2"]) } else { json!([]) },
                "description": if i == 4 { "100%_sure" } else { "plain" },
                "uri": if i == 2 { Value::Null } else { json!(format!("dir:///v/{i}")) },
            })
        })
        .collect()
}

fn pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn ids(q: &str) -> Vec<String> {
    let query = Query::parse(&VOLUME, &pairs(q), "ballast").unwrap();
    query.page(rows()).unwrap().rows.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn every_modifier_filters_as_the_spec_says() {
    assert_eq!(ids("limit=1000").len(), 25);
    assert_eq!(ids("name=vol-03"), ["1v3", "1v13", "1v23"]);
    assert_eq!(ids("name_eq=vol-03").len(), 3);
    assert_eq!(ids("name_ne=vol-03&limit=1000").len(), 22);
    assert_eq!(ids("usedBytes_lt=300"), ["1v1", "1v2"]);
    assert_eq!(ids("usedBytes_lte=300").len(), 3);
    assert_eq!(ids("usedBytes_gt=2300&sort=usedBytes"), ["1v24", "1v25"]);
    assert_eq!(ids("usedBytes_gte=2300").len(), 3);
    assert_eq!(ids("name_prefix=vol-0&name_ne=vol-01&limit=1000").len(), 22);
    assert_eq!(ids("description_like=100\\%\\_%"), ["1v4"]);
    assert_eq!(ids("description_like=p_a%"), ids("description=plain"));
    assert_eq!(ids("description_notlike=%sure&limit=1000").len(), 24);
    assert_eq!(ids("uri_ne=x&limit=1000").len(), 24, "as in SQL, ne leaves nulls out");
    assert_eq!(ids("uri_notlike=x&limit=1000").len(), 24);
    assert_eq!(
        ids("id_gt=1v9&sort=id&limit=3"),
        ["1v10", "1v11", "1v12"],
        "ids compare as they sort"
    );
    assert_eq!(ids("driver=ballast&limit=1000").len(), 0, "the driver is a known option");
    assert_eq!(ids("uri_null="), ["1v2"]);
    assert_eq!(ids("uri_notnull=&limit=1000").len(), 24);
    assert_eq!(ids("mountIds=c2"), ["1v5"]);
    assert_eq!(ids("mountIds_null=&limit=1000").len(), 24);
    assert_eq!(ids("isHostPath=true"), ["1v7"]);
    assert_eq!(ids("state=active&state_ne=active"), Vec::<String>::new(), "a repeated field ANDs");
    assert_eq!(ids("name_prefix=vol-1&name_prefix=vol-2"), Vec::<String>::new());
}

#[test]
fn bad_filters_name_the_problem() {
    let err = |q: &str| Query::parse(&VOLUME, &pairs(q), "ballast").unwrap_err();
    let e = err("colour=red");
    assert_eq!((e.code, e.field.as_deref()), ("InvalidFilter", Some("colour")));
    assert!(e.message.contains("filterable fields: id, kind, uuid, name"), "{}", e.message);
    assert_eq!(err("name_bigger=x").code, "InvalidFilter");
    assert_eq!(err("isHostPath_like=x").code, "InvalidFilter", "no like on a boolean");
    assert_eq!(err("usedBytes_gt=ten").field.as_deref(), Some("usedBytes_gt"));
    assert_eq!(err("state=actve").code, "InvalidOption");
    assert_eq!(err("sort=colour").field.as_deref(), Some("sort"));
    assert_eq!(err("order=up").field.as_deref(), Some("order"));
    assert_eq!(err("limit=-1").field.as_deref(), Some("limit"));
    assert_eq!(err("marker=garbage").field.as_deref(), Some("marker"));
}

#[test]
fn sorts_are_stable_and_ties_go_by_id() {
    let by_name = ids("sort=name&limit=6");
    assert_eq!(by_name, ["1v10", "1v20", "1v1", "1v11", "1v21", "1v2"]);
    let desc = ids("sort=name&order=desc&limit=1000");
    let mut asc = ids("sort=name&limit=1000");
    asc.reverse();
    assert_eq!(desc, asc);
    assert_eq!(
        ids("sort=id&limit=3"),
        ["1v1", "1v2", "1v3"],
        "1v9 before 1v10: ids sort as numbers"
    );
}

#[test]
fn markers_walk_every_row_once_in_both_directions() {
    for q in ["limit=7", "limit=7&sort=name", "limit=7&sort=usedBytes&order=desc", "limit=1"] {
        let schema = &VOLUME;
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut p = pairs(q);
            if let Some(m) = &marker {
                p.push(("marker".into(), m.clone()));
            }
            let query = Query::parse(schema, &p, "ballast").unwrap();
            let page = query.page(rows()).unwrap();
            assert_eq!(page.total, 25);
            if pages > 0 {
                assert!(page.prev.is_some(), "{q}: a later page has a previous one");
            }
            seen.extend(page.rows.iter().map(|r| r["id"].as_str().unwrap().to_string()));
            pages += 1;
            match page.next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let mut all =
            ids(&format!("{q}&limit=1000").replace("limit=7&", "").replace("limit=1&", ""));
        all.truncate(25);
        assert_eq!(seen, all, "{q}");
        assert!(pages >= 4, "{q}");
    }
    // A marker survives its row going away: the next page starts after
    // where that row was.
    let first = Query::parse(&VOLUME, &pairs("limit=5&sort=id"), "ballast").unwrap();
    let next = first.page(rows()).unwrap().next.unwrap();
    let mut fewer = rows();
    fewer.retain(|r| r["id"] != "1v5" && r["id"] != "1v6");
    let mut p = pairs("limit=5&sort=id");
    p.push(("marker".into(), next));
    let page = Query::parse(&VOLUME, &p, "ballast").unwrap().page(fewer).unwrap();
    let got: Vec<&str> = page.rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, ["1v7", "1v8", "1v9", "1v10", "1v11"]);
    // A marker of another sort is refused, not misread.
    let mut p = pairs("limit=5&sort=name");
    p.push(("marker".into(), first.page(rows()).unwrap().next.unwrap()));
    assert_eq!(Query::parse(&VOLUME, &p, "ballast").unwrap_err().field.as_deref(), Some("marker"));
}

#[test]
fn a_costly_like_is_cut_short_not_run_for_long() {
    let long = vec![json!({ "id": "1v1", "description": "a".repeat(200_000) }); 50];
    let q = format!("description_like=%25{}b", "a".repeat(1000));
    let query = Query::parse(&VOLUME, &pairs(&q), "ballast").unwrap();
    let t = std::time::Instant::now();
    let e = query.page(long).err().expect("refused");
    assert_eq!(e.code, "InvalidFilter");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    let many = "name_ne=x&".repeat(40);
    assert!(Query::parse(&VOLUME, &pairs(&many), "ballast").is_err(), "at most 32 filters");
}

#[test]
fn like_is_linear_and_exact() {
    assert!(like("%", ""));
    assert!(like("a%b", "ab"));
    assert!(like("a%b", "axxxb"));
    assert!(!like("a%b", "axxxc"));
    assert!(like("_b_", "abc"));
    assert!(!like("_b_", "abcd"));
    assert!(like("50\\%", "50%"));
    assert!(!like("50\\%", "500"));
    assert!(like("%a%a%a%a%b", &("a".repeat(200) + "b")));
    assert!(!like("%a%a%a%a%b", &"a".repeat(5000)));
}

#[test]
fn the_collection_carries_links_for_every_sort_filter_and_page() {
    let q = Query::parse(&VOLUME, &pairs("state=inactive&limit=5&sort=name"), "ballast").unwrap();
    let page = q.page(rows()).unwrap();
    let c = serde_json::to_value(collection("http://h", &q, &page, vec![0; 5])).unwrap();
    assert_eq!(c["type"], "collection");
    assert_eq!(c["resourceType"], "volume");
    assert_eq!(c["pagination"]["limit"], 5);
    assert_eq!(c["pagination"]["total"], 17);
    assert_eq!(c["pagination"]["partial"], true);
    assert!(c["pagination"].get("previous").is_none());
    let next = c["pagination"]["next"].as_str().unwrap();
    assert!(
        next.starts_with("http://h/v1/volumes?state=inactive&sort=name&limit=5&marker="),
        "{next}"
    );
    assert_eq!(c["sort"]["name"], "name");
    assert_eq!(c["sort"]["reverse"], "http://h/v1/volumes?state=inactive&sort=name&order=desc");
    assert_eq!(c["sortLinks"]["usedBytes"], "http://h/v1/volumes?state=inactive&sort=usedBytes");
    assert_eq!(c["filters"]["state"], json!([{ "modifier": "eq", "value": "inactive" }]));
    assert_eq!(c["filters"]["name"], Value::Null);
    assert_eq!(c["createTypes"]["volume"], "http://h/v1/volumes");
    let meta = Query::parse(&VOLUME, &pairs("limit=0"), "ballast").unwrap();
    let page = meta.page(rows()).unwrap();
    assert!(page.rows.is_empty());
    assert_eq!(page.total, 25);
    assert!(page.partial, "limit=0 leaves every row out");
    // Desc order without a sort keeps its order in the links a page gives.
    let q = Query::parse(&VOLUME, &pairs("order=desc&limit=3"), "ballast").unwrap();
    let page = q.page(rows()).unwrap();
    let c = serde_json::to_value(collection("http://h", &q, &page, vec![0; 3])).unwrap();
    let next = c["pagination"]["next"].as_str().unwrap();
    assert!(next.contains("order=desc"), "{next}");
}
