//! Form bodies (`application/x-www-form-urlencoded`) as the JSON object
//! the same request would send: a form's values are all text, so each is
//! typed by the schema's field (`allocate=false` a boolean, `snapshotKeep=3`
//! a number), and `driverOpts[size]=1G` is one entry of an object field.
//! What the text cannot be stays text, for the schema check to name.

use serde_json::{Map, Value, json};

use super::ApiError;
use super::schema::{self, Field, Schema, Ty};

/// The JSON object of a form's pairs, for `schema`.
pub fn to_json(schema: &Schema, pairs: &[(String, String)]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (key, text) in pairs {
        let entry = key.split_once('[').and_then(|(n, rest)| Some((n, rest.strip_suffix(']')?)));
        let Some((name, inner)) = entry else {
            let field = schema.field(key);
            match (field.map(|f| f.ty), out.get_mut(key.as_str())) {
                // A repeated key is the next item of a list.
                (Some(Ty::Array), Some(Value::Array(items))) => items.push(json!(text)),
                (Some(Ty::Array), None) => {
                    out.insert(key.clone(), json!([text]));
                }
                (_, Some(_)) => return Err(twice(key)),
                (_, None) => {
                    out.insert(key.clone(), typed(field, text));
                }
            }
            continue;
        };
        // The entry's own type, for a nested object of a known schema.
        let nested = match schema.field(name).map(|f| f.ty) {
            Some(Ty::Object(id)) => schema::find(id).and_then(|s| s.field(inner)),
            _ => None,
        };
        let object = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
        let Some(object) = object.as_object_mut() else { return Err(twice(name)) };
        if object.insert(inner.to_string(), typed(nested, text)).is_some() {
            return Err(twice(key));
        }
    }
    Ok(Value::Object(out))
}

/// A form value as the JSON value of `field`'s type, when it reads as one.
fn typed(field: Option<&Field>, text: &str) -> Value {
    let Some(f) = field else { return json!(text) };
    match f.ty {
        Ty::String | Ty::Date | Ty::Enum | Ty::Reference(_) if !text.is_empty() => json!(text),
        // An empty box of a field that may be null is null; otherwise
        // left as it came, for the check to refuse with the type.
        _ if text.is_empty() && f.nullable => Value::Null,
        Ty::Boolean => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(text),
        },
        Ty::Int => text.parse::<i64>().map_or_else(|_| json!(text), |n| json!(n)),
        _ => json!(text),
    }
}

fn twice(key: &str) -> ApiError {
    ApiError::field("InvalidFormat", key, format!("`{key}` is given twice in the form"))
        .detail("a form gives each field once; a list field (array[string]) may repeat")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::schema::types::{VOLUME, VOLUME_DEALLOCATE_INPUT};

    fn pairs(form: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(form.as_bytes()).into_owned().collect()
    }

    #[test]
    fn a_form_create_reads_as_the_json_one() {
        let form = "name=db&description=a+b&allocate=false&driverOpts%5Bsize%5D=1G\
                    &driverOpts[mode]=0700&schedule[snapshotKeep]=3&schedule[snapshotEvery]=1h";
        let v = to_json(&VOLUME, &pairs(form)).unwrap();
        assert_eq!(
            v,
            json!({
                "name": "db",
                "description": "a b",
                "allocate": false,
                "driverOpts": { "size": "1G", "mode": "0700" },
                "schedule": { "snapshotKeep": 3, "snapshotEvery": "1h" },
            })
        );
        let input = to_json(&VOLUME_DEALLOCATE_INPUT, &pairs("force=true")).unwrap();
        assert_eq!(input, json!({ "force": true }));
    }

    #[test]
    fn form_values_that_are_not_of_the_type_stay_text_for_the_check_to_refuse() {
        let v = to_json(&VOLUME, &pairs("allocate=yes&name=&sizeBytes=ten")).unwrap();
        assert_eq!(v, json!({ "allocate": "yes", "name": "", "sizeBytes": "ten" }));
        let e = crate::admin::schema::accept(&VOLUME, &v, crate::admin::schema::Mode::Create, "b")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"), "{}", e.message);
    }

    #[test]
    fn a_field_given_twice_is_refused_by_name() {
        for form in ["name=a&name=b", "driverOpts[size]=1G&driverOpts[size]=2G", "name=a&name[x]=b"]
        {
            let e = to_json(&VOLUME, &pairs(form)).unwrap_err();
            assert!(e.message.contains("given twice"), "{form}: {}", e.message);
        }
    }
}
