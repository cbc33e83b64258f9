//! One `{field}_{modifier}` filter: parsed once for the field's type and
//! matched against a row's cell, as SQL would (a null matches only
//! `null`).

use std::borrow::Cow;
use std::cmp::Ordering;

use axum::http::StatusCode;

use super::like::{P, compile, like_in};
use super::{Cell, bad, id_key, names};
use crate::admin::error::ApiError;
use crate::admin::schema::{Field, Schema, Ty};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Modifier {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    Prefix,
    Like,
    NotLike,
    Null,
    NotNull,
}

impl Modifier {
    fn parse(s: &str) -> Option<Modifier> {
        Some(match s {
            "eq" => Modifier::Eq,
            "ne" => Modifier::Ne,
            "lt" => Modifier::Lt,
            "lte" => Modifier::Lte,
            "gt" => Modifier::Gt,
            "gte" => Modifier::Gte,
            "prefix" => Modifier::Prefix,
            "like" => Modifier::Like,
            "notlike" => Modifier::NotLike,
            "null" => Modifier::Null,
            "notnull" => Modifier::NotNull,
            _ => return None,
        })
    }
}

/// What a filter compares with, parsed once for the field's type.
#[derive(Debug)]
enum Want {
    None,
    Bool(bool),
    Int(i64),
    Str(String),
}

#[derive(Debug)]
pub(super) struct Filter {
    pub(super) field: &'static str,
    pub(super) modifier: Modifier,
    pub(super) modifier_name: &'static str,
    want: Want,
    /// The LIKE pattern, compiled once.
    pattern: Vec<P>,
    pub(super) raw: String,
}

impl Filter {
    /// As in SQL, a null field matches no comparison but `null`: `ne` and
    /// `notlike` leave null rows out too.
    pub(super) fn matches(&self, cell: &Cell, budget: &std::cell::Cell<u64>) -> bool {
        use Modifier::*;
        match self.modifier {
            Null => is_null(cell),
            NotNull => !is_null(cell),
            _ if matches!(cell, Cell::Null) => false,
            Ne => !self.compare(cell, Eq, budget),
            NotLike => !self.compare(cell, Like, budget),
            m if self.field == "id" && matches!(m, Lt | Lte | Gt | Gte) => {
                // Ids order as `sort=id` does: 1v9 before 1v10.
                let want = id_key(Cell::Str(Cow::Borrowed(self.raw.as_str())));
                ordered(id_key(cell.clone()).cmp(&want), m)
            }
            m => self.compare(cell, m, budget),
        }
    }

    fn compare(&self, cell: &Cell, m: Modifier, budget: &std::cell::Cell<u64>) -> bool {
        match cell {
            Cell::List(items) => {
                items.iter().any(|i| self.compare(&Cell::Str(Cow::Borrowed(i.as_ref())), m, budget))
            }
            Cell::Null => false,
            Cell::Bool(b) => matches!(self.want, Want::Bool(w) if m == Modifier::Eq && *b == w),
            Cell::Int(n) => match self.want {
                Want::Int(w) => ordered(n.cmp(&w), m),
                _ => false,
            },
            Cell::Str(s) => match &self.want {
                Want::Str(w) => match m {
                    Modifier::Prefix => s.starts_with(w.as_str()),
                    Modifier::Like => like_in(&self.pattern, s, budget),
                    m => ordered(s.as_ref().cmp(w.as_str()), m),
                },
                _ => false,
            },
        }
    }
}

fn is_null(cell: &Cell) -> bool {
    match cell {
        Cell::Null => true,
        Cell::List(l) => l.is_empty(),
        _ => false,
    }
}

fn ordered(o: Ordering, m: Modifier) -> bool {
    match m {
        Modifier::Eq => o.is_eq(),
        Modifier::Lt => o.is_lt(),
        Modifier::Lte => o.is_le(),
        Modifier::Gt => o.is_gt(),
        Modifier::Gte => o.is_ge(),
        _ => false,
    }
}

pub(super) fn parse_filter(
    schema: &'static Schema,
    key: &str,
    value: &str,
    driver: &str,
) -> Result<Filter, ApiError> {
    let (field, modifier_name) = match schema.queryable().find(|f| f.name == key) {
        Some(f) => (f, "eq"),
        None => {
            let split = key.rsplit_once('_');
            let found = split.and_then(|(name, m)| {
                let f = schema.queryable().find(|f| f.name == name)?;
                let m = f.ty.modifiers().iter().find(|x| **x == m)?;
                Some((f, *m))
            });
            found.ok_or_else(|| unknown_filter(schema, key))?
        }
    };
    let modifier = Modifier::parse(modifier_name).expect("the schema lists known modifiers");
    // A bad value is blamed on the query key the client sent.
    let want = want(field, modifier, value, driver).map_err(|mut e| {
        e.field = Some(key.to_string());
        e
    })?;
    let pattern = if matches!(modifier, Modifier::Like | Modifier::NotLike) {
        compile(value)
    } else {
        Vec::new()
    };
    Ok(Filter { field: field.name, modifier, modifier_name, want, pattern, raw: value.to_string() })
}

fn unknown_filter(schema: &Schema, key: &str) -> ApiError {
    let mut e = ApiError::field(
        "InvalidFilter",
        key,
        format!("unknown filter field {key:?}; filterable fields: {}", names(schema)),
    );
    e.detail = format!(
        "filters are FIELD=VALUE or FIELD_MODIFIER=VALUE; /v1/schemas/{} lists each field's \
         modifiers under collectionFilters",
        schema.id
    );
    e.status = StatusCode::UNPROCESSABLE_ENTITY;
    e
}

fn want(f: &Field, m: Modifier, value: &str, driver: &str) -> Result<Want, ApiError> {
    if matches!(m, Modifier::Null | Modifier::NotNull) {
        return Ok(Want::None);
    }
    Ok(match f.ty {
        Ty::Int => {
            Want::Int(value.parse().map_err(|_| {
                bad(f.name, format!("filter {}: {value:?} is not an integer", f.name))
            })?)
        }
        Ty::Boolean => Want::Bool(match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(bad(
                    f.name,
                    format!("filter {}: {value:?} is not true or false", f.name),
                ));
            }
        }),
        _ => {
            let options = f.option_values(driver);
            if matches!(m, Modifier::Eq | Modifier::Ne)
                && !options.is_empty()
                && !options.iter().any(|o| o == value)
            {
                return Err(ApiError::field(
                    "InvalidOption",
                    f.name,
                    format!("filter {}: {value:?} is not one of {}", f.name, options.join(", ")),
                ));
            }
            Want::Str(value.to_string())
        }
    })
}
