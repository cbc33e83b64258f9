//! Request bodies checked against a schema, as the spec's clients expect:
//! fields the request may not write (read-only ones, another resource's,
//! ones this server does not know) are dropped, so the whole resource
//! just fetched can be sent back; every field it may write is checked
//! against its type, options, length, characters and rule, and the first
//! one wrong is named in a 422.

use serde_json::{Map, Value};

use super::{Field, Schema, Ty, find};
use crate::admin::error::ApiError;

/// What the body is for, which decides the fields it may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A create: `create` fields, defaults filled in, `required` enforced.
    Create,
    /// An update: `update` fields, only those present.
    Update,
    /// An action's input: like a create of the input type.
    Input,
}

/// The writable fields of `body`, checked, with defaults filled in.
pub fn accept(
    schema: &Schema,
    body: &Value,
    mode: Mode,
    driver: &str,
) -> Result<Map<String, Value>, ApiError> {
    accept_at(schema, body, mode, driver, "")
}

fn accept_at(
    schema: &Schema,
    body: &Value,
    mode: Mode,
    driver: &str,
    path: &str,
) -> Result<Map<String, Value>, ApiError> {
    let empty = Map::new();
    let given = match body {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => {
            let what = if path.is_empty() { "the request body".to_string() } else { quote(path) };
            let mut e = ApiError::field(
                "InvalidFormat",
                path.trim_end_matches('.'),
                format!("{what} must be a JSON object"),
            );
            if path.is_empty() {
                e.field = None;
            }
            return Err(e);
        }
    };
    let mut out = Map::new();
    for f in schema.fields {
        let writable = match mode {
            Mode::Create | Mode::Input => f.create,
            Mode::Update => f.update,
        };
        if !writable {
            continue;
        }
        let name = format!("{path}{}", f.name);
        match given.get(f.name) {
            Some(Value::Null) if f.nullable => {
                out.insert(f.name.into(), Value::Null);
            }
            Some(Value::Null) | None if mode != Mode::Update => {
                if let Some(d) = f.default_value(driver) {
                    out.insert(f.name.into(), d);
                } else if f.required {
                    return Err(ApiError::field(
                        "MissingRequired",
                        &name,
                        format!("{} is required", quote(&name)),
                    )
                    .detail(format!(
                        "add {} ({}) to the request body",
                        quote(&name),
                        f.ty.spec_name()
                    )));
                }
            }
            None => {}
            Some(Value::Null) => {
                return Err(ApiError::field(
                    "InvalidFormat",
                    &name,
                    format!("{} cannot be null", quote(&name)),
                ));
            }
            Some(v) => {
                let v = check(f, v, mode, driver, &name)?;
                out.insert(f.name.into(), v);
            }
        }
    }
    Ok(out)
}

fn quote(name: &str) -> String {
    format!("`{name}`")
}

fn check(f: &Field, v: &Value, mode: Mode, driver: &str, name: &str) -> Result<Value, ApiError> {
    let wrong = |what: &str| {
        ApiError::field("InvalidFormat", name, format!("{} must be {what}", quote(name)))
            .detail(format!("its type is {}", f.ty.spec_name()))
    };
    match f.ty {
        Ty::String | Ty::Date | Ty::Enum | Ty::Reference(_) => {
            let Some(s) = v.as_str() else { return Err(wrong("a string")) };
            check_text(f, s, driver, name)?;
        }
        Ty::Int => {
            let Some(n) = v.as_i64() else { return Err(wrong("an integer")) };
            if let Some(min) = f.min
                && n < min
            {
                return Err(wrong(&format!("at least {min}")));
            }
            if let Some(max) = f.max
                && n > max
            {
                return Err(wrong(&format!("at most {max}")));
            }
        }
        Ty::Boolean => {
            if !v.is_boolean() {
                return Err(wrong("true or false"));
            }
        }
        Ty::Map => {
            let ok = v.as_object().is_some_and(|m| m.values().all(Value::is_string));
            if !ok {
                return Err(wrong("an object whose values are strings"));
            }
        }
        Ty::Array => {
            let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if !ok {
                return Err(wrong("an array of strings"));
            }
        }
        Ty::Object(id) => {
            let schema = find(id).expect("every nested type has a schema");
            let nested_mode = if mode == Mode::Update { Mode::Input } else { mode };
            let inner = accept_at(schema, v, nested_mode, driver, &format!("{name}."))?;
            return Ok(Value::Object(inner));
        }
    }
    Ok(v.clone())
}

fn check_text(f: &Field, s: &str, driver: &str, name: &str) -> Result<(), ApiError> {
    let options = f.option_values(driver);
    if !options.is_empty() && !options.iter().any(|o| o == s) {
        return Err(ApiError::field(
            "InvalidOption",
            name,
            format!(
                "{} {:?} is not a valid option; valid: {}",
                quote(name),
                shorten(s),
                options.join(", ")
            ),
        )
        .detail(format!("set {} to one of: {}", quote(name), options.join(", "))));
    }
    let len = s.chars().count() as u64;
    let (min, max) =
        (u64::from(f.min_length.unwrap_or(0)), f.max_length.map_or(u64::MAX, u64::from));
    if len < min || len > max {
        return Err(ApiError::field(
            "InvalidFormat",
            name,
            format!("{} is {len} characters long; it must be {min} to {max}", quote(name)),
        ));
    }
    if let Some(valid) = f.valid_chars
        && let Some(bad) = s.chars().find(|c| !in_ranges(valid, *c))
    {
        return Err(ApiError::field(
            "InvalidFormat",
            name,
            format!("{} {:?} has the character {bad:?}; valid: {valid}", quote(name), shorten(s)),
        ));
    }
    if let Some(rule) = f.rule
        && let Err(e) = rule(s)
    {
        return Err(ApiError::field("InvalidFormat", name, e.to_string()));
    }
    Ok(())
}

/// Whether `c` is in a `validChars` set such as `A-Za-z0-9_.-` (a `-`
/// first or last is itself).
pub fn in_ranges(set: &str, c: char) -> bool {
    let chars: Vec<char> = set.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if i + 2 < chars.len() && chars[i + 1] == '-' {
            if (chars[i]..=chars[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if chars[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        s.chars().take(80).collect::<String>() + "…"
    }
}
