//! The types of the admin API, described once: `/v1/schemas` renders
//! them, request bodies are checked against them, collection filters and
//! sorts are allowed by them, and the OpenAPI document's components are
//! generated from them, so the three cannot disagree.
//!
//! `types.rs` holds the definitions; this file the vocabulary and what
//! is done with it.

mod check;
pub mod types;

use serde_json::{Map, Value, json};

pub use check::{Mode, accept};
pub use types::SCHEMAS;

/// The type of a field, as the spec spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Int,
    Boolean,
    Date,
    Enum,
    /// `map[string]`
    Map,
    /// `array[string]`
    Array,
    /// `reference[type]`: the id (or name) of a resource of that type.
    Reference(&'static str),
    /// A nested object of another schema's shape.
    Object(&'static str),
}

impl Ty {
    pub fn spec_name(self) -> String {
        match self {
            Ty::String => "string".into(),
            Ty::Int => "int".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Date => "date".into(),
            Ty::Enum => "enum".into(),
            Ty::Map => "map[string]".into(),
            Ty::Array => "array[string]".into(),
            Ty::Reference(t) => format!("reference[{t}]"),
            Ty::Object(t) => t.into(),
        }
    }

    /// The filter modifiers that mean something for this type. Objects
    /// and maps cannot be filtered on.
    pub fn modifiers(self) -> &'static [&'static str] {
        match self {
            Ty::String | Ty::Enum | Ty::Date | Ty::Reference(_) => &[
                "eq", "ne", "lt", "lte", "gt", "gte", "prefix", "like", "notlike", "null",
                "notnull",
            ],
            Ty::Int => &["eq", "ne", "lt", "lte", "gt", "gte", "null", "notnull"],
            Ty::Boolean => &["eq", "ne", "null", "notnull"],
            Ty::Array => &["eq", "ne", "null", "notnull"],
            Ty::Map | Ty::Object(_) => &[],
        }
    }
}

/// The allowed values of an enum field.
#[derive(Debug, Clone, Copy)]
pub enum Options {
    None,
    Fixed(&'static [&'static str]),
    /// The one driver name this endpoint serves, known at run time.
    Driver,
}

/// A field's default when a create leaves it out.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    None,
    Bool(bool),
    /// The driver name this endpoint serves.
    Driver,
}

/// One field of a schema. Built with the `const fn`s below, read by
/// every user of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub create: bool,
    pub update: bool,
    pub required: bool,
    pub nullable: bool,
    pub default: Default,
    pub options: Options,
    pub valid_chars: Option<&'static str>,
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    /// Collections can be filtered and sorted on it.
    pub query: bool,
    /// The real rule, when characters and length do not say it all (a
    /// volume name must start with a letter or digit).
    pub rule: Option<fn(&str) -> crate::Result<()>>,
    pub description: &'static str,
}

pub const fn field(name: &'static str, ty: Ty, description: &'static str) -> Field {
    Field {
        name,
        ty,
        create: false,
        update: false,
        required: false,
        nullable: false,
        default: Default::None,
        options: Options::None,
        valid_chars: None,
        min_length: None,
        max_length: None,
        min: None,
        max: None,
        query: false,
        rule: None,
        description,
    }
}

impl Field {
    pub const fn create(mut self) -> Self {
        self.create = true;
        self
    }
    pub const fn update(mut self) -> Self {
        self.update = true;
        self
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
    pub const fn query(mut self) -> Self {
        self.query = true;
        self
    }
    pub const fn default(mut self, d: Default) -> Self {
        self.default = d;
        self
    }
    pub const fn options(mut self, o: Options) -> Self {
        self.options = o;
        self
    }
    pub const fn length(mut self, min: u32, max: u32) -> Self {
        self.min_length = Some(min);
        self.max_length = Some(max);
        self
    }
    pub const fn chars(mut self, valid: &'static str) -> Self {
        self.valid_chars = Some(valid);
        self
    }
    pub const fn range(mut self, min: i64, max: i64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
    pub const fn rule(mut self, rule: fn(&str) -> crate::Result<()>) -> Self {
        self.rule = Some(rule);
        self
    }

    /// The allowed values, with the run-time ones filled in.
    pub fn option_values(&self, driver: &str) -> Vec<String> {
        match self.options {
            Options::None => Vec::new(),
            Options::Fixed(o) => o.iter().map(|s| s.to_string()).collect(),
            Options::Driver => vec![driver.to_string()],
        }
    }

    pub fn default_value(&self, driver: &str) -> Option<Value> {
        match self.default {
            Default::None => None,
            Default::Bool(b) => Some(json!(b)),
            Default::Driver => Some(json!(driver)),
        }
    }

    fn render(&self, driver: &str) -> Value {
        let mut f = Map::new();
        f.insert("type".into(), json!(self.ty.spec_name()));
        for (key, on) in [
            ("create", self.create),
            ("update", self.update),
            ("required", self.required),
            ("nullable", self.nullable),
        ] {
            f.insert(key.into(), json!(on));
        }
        if let Some(d) = self.default_value(driver) {
            f.insert("default".into(), d);
        }
        let options = self.option_values(driver);
        if !options.is_empty() {
            f.insert("options".into(), json!(options));
        }
        if let Some(c) = self.valid_chars {
            f.insert("validChars".into(), json!(c));
        }
        if let Some(n) = self.min_length {
            f.insert("minLength".into(), json!(n));
        }
        if let Some(n) = self.max_length {
            f.insert("maxLength".into(), json!(n));
        }
        if let Some(n) = self.min {
            f.insert("min".into(), json!(n));
        }
        if let Some(n) = self.max {
            f.insert("max".into(), json!(n));
        }
        if !self.description.is_empty() {
            f.insert("description".into(), json!(self.description));
        }
        Value::Object(f)
    }
}

/// An action in a schema: what it takes and what it answers with.
#[derive(Debug, Clone, Copy)]
pub struct ActionDef {
    pub name: &'static str,
    pub input: Option<&'static str>,
    pub output: &'static str,
}

/// One type of the API.
#[derive(Debug)]
pub struct Schema {
    pub id: &'static str,
    /// The collection's URL segment under `/v1`, when it can be listed.
    pub collection: Option<&'static str>,
    pub description: &'static str,
    pub fields: &'static [Field],
    pub resource_methods: &'static [&'static str],
    pub collection_methods: &'static [&'static str],
    pub resource_actions: &'static [ActionDef],
    /// The sort a collection gets when none is asked for.
    pub default_sort: &'static str,
}

impl Schema {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The fields collections can be filtered and sorted on.
    pub fn queryable(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.query)
    }

    pub fn action(&self, name: &str) -> Option<&ActionDef> {
        self.resource_actions.iter().find(|a| a.name == name)
    }

    pub fn render(&self, base: &str, driver: &str) -> Value {
        let mut links = Map::new();
        links.insert("self".into(), json!(format!("{base}/v1/schemas/{}", self.id)));
        if let Some(c) = self.collection {
            links.insert("collection".into(), json!(format!("{base}/v1/{c}")));
        }
        let fields: Map<String, Value> =
            self.fields.iter().map(|f| (f.name.to_string(), f.render(driver))).collect();
        let actions: Map<String, Value> = self
            .resource_actions
            .iter()
            .map(|a| {
                let mut io = Map::new();
                if let Some(i) = a.input {
                    io.insert("input".into(), json!(i));
                }
                io.insert("output".into(), json!(a.output));
                (a.name.to_string(), Value::Object(io))
            })
            .collect();
        let filters: Map<String, Value> = self
            .queryable()
            .map(|f| {
                let mut filter = json!({ "modifiers": f.ty.modifiers() });
                let options = f.option_values(driver);
                if !options.is_empty() {
                    filter["options"] = json!(options);
                }
                (f.name.to_string(), filter)
            })
            .collect();
        json!({
            "id": self.id,
            "type": "schema",
            "description": self.description,
            "pluralName": self.collection,
            "links": links,
            "resourceFields": fields,
            "resourceMethods": self.resource_methods,
            "collectionMethods": self.collection_methods,
            "resourceActions": actions,
            "collectionActions": {},
            "collectionFilters": filters,
        })
    }
}

pub fn find(id: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().copied().find(|s| s.id.eq_ignore_ascii_case(id))
}

/// The schema whose collection lives at `/v1/{segment}`.
pub fn by_collection(segment: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().copied().find(|s| s.collection == Some(segment))
}

#[cfg(test)]
mod tests;
