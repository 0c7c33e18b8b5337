//! Rule files: TOML (feature `alerts-toml`) or JSON (feature `json`).
//!
//! ```toml
//! [[rule]]
//! name = "db_slow"
//! expr = "p99(db_query)[1m] > 50ms"   # the warning level …
//! critical = "200ms"                  # … and the critical one
//! for = "3 ticks"                     # or a duration: "30s"
//! cooldown = "5m"
//! description = "database latency"
//!
//! [[rule]]
//! name = "api_errors"
//! expr = "error_rate(api)[5m] > 5%"
//! severity = "critical"               # the expression's threshold is the critical level
//! ```
//!
//! JSON is the same rules as `{"rules": [{…}, …]}` (or a bare array). Fields: `name`, `expr`
//! (required), `severity`, `warning`, `critical`, `target`, `for`, `cooldown`, `description`.
//! Every error names the rule (position and name) and the field.

#[cfg(any(feature = "json", feature = "alerts-toml"))]
use std::time::Duration;
use std::{fmt, path::Path};

use super::Alerts;
#[cfg(any(feature = "json", feature = "alerts-toml"))]
use super::{expr, Rule, RuleError, Severity};

/// Why a rule file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based position of the rule in the file, if the error is in one.
    pub index: Option<usize>,
    /// The rule's name, if it has one.
    pub rule: Option<String>,
    /// The field at fault.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("alert rules")?;
        if let Some(i) = self.index {
            write!(f, ", rule #{i}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, " ({r:?})")?;
        }
        if let Some(k) = &self.field {
            write!(f, ", field `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn file(message: impl Into<String>) -> ConfigError {
        ConfigError { index: None, rule: None, field: None, message: message.into() }
    }
}

#[cfg(any(feature = "json", feature = "alerts-toml"))]
/// A field value, whatever the file format.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Str(String),
    Int(i64),
    Float(f64),
    Other(&'static str),
}

#[cfg(any(feature = "json", feature = "alerts-toml"))]
const FIELDS: &[&str] =
    &["name", "expr", "severity", "warning", "critical", "target", "for", "cooldown", "description"];

#[cfg(any(feature = "json", feature = "alerts-toml"))]
/// Builds the rules of a file from its `(field, value)` lists.
pub(crate) fn build(rules: Vec<Vec<(String, Raw)>>) -> Result<Alerts, ConfigError> {
    let mut alerts = Alerts::new();
    for (i, fields) in rules.into_iter().enumerate() {
        let index = Some(i + 1);
        let name = fields.iter().find(|(k, _)| k == "name").and_then(|(_, v)| match v {
            Raw::Str(s) => Some(s.clone()),
            _ => None,
        });
        let err = |field: &str, message: String| ConfigError {
            index,
            rule: name.clone(),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message,
        };
        let from_rule = |e: RuleError| err(e.field, e.message);
        let text = |field: &str, v: &Raw| -> Result<String, ConfigError> {
            match v {
                Raw::Str(s) => Ok(s.clone()),
                Raw::Int(n) if field != "name" && field != "expr" => Ok(n.to_string()),
                Raw::Float(x) if field != "name" && field != "expr" => Ok(x.to_string()),
                other => Err(err(field, format!("expected a string, found {}", raw_type(other)))),
            }
        };
        for (k, _) in &fields {
            if !FIELDS.contains(&k.as_str()) {
                return Err(err(k, format!("unknown field; known fields: {}", FIELDS.join(", "))));
            }
        }
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v);
        let Some(name_raw) = get("name") else { return Err(err("name", "missing; every rule needs a name".into())) };
        let name_s = text("name", name_raw)?;
        let Some(expr_raw) = get("expr") else {
            return Err(err("expr", "missing; every rule needs an expression like `p99(db_query) > 50ms`".into()));
        };
        let mut rule = Rule::new(&name_s, &text("expr", expr_raw)?).map_err(from_rule)?;
        if let Some(v) = get("severity") {
            rule = match text("severity", v)?.as_str() {
                "warning" => rule.severity(Severity::Warning),
                "critical" => rule.severity(Severity::Critical),
                other => {
                    return Err(err("severity", format!("unknown severity {other:?}; use \"warning\" or \"critical\"")))
                }
            };
        }
        if let Some(v) = get("warning") {
            rule = rule.warning(&text("warning", v)?).map_err(from_rule)?;
        }
        if let Some(v) = get("critical") {
            rule = rule.critical(&text("critical", v)?).map_err(from_rule)?;
        }
        if let Some(v) = get("target") {
            rule = rule.target(&text("target", v)?).map_err(from_rule)?;
        }
        if let Some(v) = get("for") {
            let hold = match v {
                Raw::Int(n) => u32::try_from(*n).ok().map(expr::Hold::Ticks),
                Raw::Str(s) => expr::parse_hold(s),
                _ => None,
            };
            let Some(hold) = hold else {
                return Err(err(
                    "for",
                    format!(
                        "bad duration {}: expected \"N ticks\", a number of ticks or a duration like \"30s\", \"5m\"",
                        show(v)
                    ),
                ));
            };
            rule = rule.hold(hold);
        }
        if let Some(v) = get("cooldown") {
            let d = match v {
                Raw::Str(s) if s.trim() == "0" => Some(Duration::ZERO),
                Raw::Int(0) => Some(Duration::ZERO),
                Raw::Str(s) => crate::window::parse_duration(s),
                _ => None,
            };
            let Some(d) = d else {
                return Err(err(
                    "cooldown",
                    format!("bad duration {}: expected a duration like \"30s\", \"5m\", \"1h\"", show(v)),
                ));
            };
            rule = rule.cooldown(d);
        }
        if let Some(v) = get("description") {
            rule = rule.description(&text("description", v)?);
        }
        alerts.add(rule).map_err(from_rule)?;
    }
    Ok(alerts)
}

#[cfg(any(feature = "json", feature = "alerts-toml"))]
fn raw_type(v: &Raw) -> &'static str {
    match v {
        Raw::Str(_) => "a string",
        Raw::Int(_) => "an integer",
        Raw::Float(_) => "a float",
        Raw::Other(t) => t,
    }
}

#[cfg(any(feature = "json", feature = "alerts-toml"))]
fn show(v: &Raw) -> String {
    match v {
        Raw::Str(s) => format!("{s:?}"),
        Raw::Int(n) => n.to_string(),
        Raw::Float(x) => x.to_string(),
        Raw::Other(t) => (*t).to_owned(),
    }
}

#[cfg(feature = "json")]
pub(crate) fn from_json(s: &str) -> Result<Alerts, ConfigError> {
    use serde_json::Value as J;
    let doc: J = serde_json::from_str(s).map_err(|e| ConfigError::file(format!("invalid JSON: {e}")))?;
    let list = match doc {
        J::Array(a) => a,
        J::Object(mut o) => {
            if let Some(k) = o.keys().find(|k| *k != "rules" && *k != "rule") {
                return Err(ConfigError::file(format!("unknown top-level key {k:?}; put rules under \"rules\"")));
            }
            match o.remove("rules").or_else(|| o.remove("rule")) {
                Some(J::Array(a)) => a,
                Some(_) => return Err(ConfigError::file("\"rules\" must be an array of rule objects")),
                None => Vec::new(),
            }
        }
        _ => return Err(ConfigError::file("expected an object with \"rules\" or an array of rules")),
    };
    let mut rules = Vec::with_capacity(list.len());
    for (i, r) in list.into_iter().enumerate() {
        let J::Object(o) = r else {
            return Err(ConfigError {
                index: Some(i + 1),
                rule: None,
                field: None,
                message: "a rule must be an object".into(),
            });
        };
        rules.push(
            o.into_iter()
                .map(|(k, v)| {
                    let raw = match v {
                        J::String(s) => Raw::Str(s),
                        J::Number(n) => match n.as_i64() {
                            Some(i) => Raw::Int(i),
                            None => Raw::Float(n.as_f64().unwrap_or(f64::NAN)),
                        },
                        J::Bool(_) => Raw::Other("a boolean"),
                        J::Null => Raw::Other("null"),
                        J::Array(_) => Raw::Other("an array"),
                        J::Object(_) => Raw::Other("an object"),
                    };
                    (k, raw)
                })
                .collect(),
        );
    }
    build(rules)
}

#[cfg(feature = "alerts-toml")]
pub(crate) fn from_toml(s: &str) -> Result<Alerts, ConfigError> {
    use toml::Value as T;
    let doc: toml::Table = s.parse().map_err(|e: toml::de::Error| ConfigError::file(format!("invalid TOML: {e}")))?;
    let mut list = Vec::new();
    for (k, v) in doc {
        if k != "rule" && k != "rules" {
            return Err(ConfigError::file(format!("unknown top-level key {k:?}; write rules as [[rule]] tables")));
        }
        match v {
            T::Array(a) => list.extend(a),
            _ => return Err(ConfigError::file(format!("`{k}` must be an array of tables: write [[{k}]]"))),
        }
    }
    let mut rules = Vec::with_capacity(list.len());
    for (i, r) in list.into_iter().enumerate() {
        let T::Table(t) = r else {
            return Err(ConfigError {
                index: Some(i + 1),
                rule: None,
                field: None,
                message: "a rule must be a table".into(),
            });
        };
        rules.push(
            t.into_iter()
                .map(|(k, v)| {
                    let raw = match v {
                        T::String(s) => Raw::Str(s),
                        T::Integer(n) => Raw::Int(n),
                        T::Float(x) => Raw::Float(x),
                        T::Boolean(_) => Raw::Other("a boolean"),
                        T::Datetime(_) => Raw::Other("a date-time"),
                        T::Array(_) => Raw::Other("an array"),
                        T::Table(_) => Raw::Other("a table"),
                    };
                    (k, raw)
                })
                .collect(),
        );
    }
    build(rules)
}

impl Alerts {
    /// Rules from a JSON document: the TOML format's fields, as `{"rules": [{…}, …]}` or a bare array.
    #[cfg(feature = "json")]
    pub fn from_json_str(s: &str) -> Result<Alerts, ConfigError> {
        from_json(s)
    }

    /// Rules from a TOML document (`[[rule]]` tables).
    #[cfg(feature = "alerts-toml")]
    pub fn from_toml_str(s: &str) -> Result<Alerts, ConfigError> {
        from_toml(s)
    }

    /// Rules from a `.toml` or `.json` file, by extension.
    pub fn load(path: impl AsRef<Path>) -> Result<Alerts, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(format!("cannot read {}: {e}", path.display())))?;
        let in_file = |mut e: ConfigError| {
            e.message = format!("{} ({})", e.message, path.display());
            e
        };
        match path.extension().and_then(|e| e.to_str()) {
            #[cfg(feature = "alerts-toml")]
            Some("toml") => from_toml(&text).map_err(in_file),
            #[cfg(not(feature = "alerts-toml"))]
            Some("toml") => Err(in_file(ConfigError::file("TOML rule files need the `alerts-toml` feature"))),
            #[cfg(feature = "json")]
            Some("json") => from_json(&text).map_err(in_file),
            #[cfg(not(feature = "json"))]
            Some("json") => Err(in_file(ConfigError::file("JSON rule files need the `json` feature"))),
            _ => {
                let _ = text;
                Err(in_file(ConfigError::file("unknown rule file type: use a .toml or .json extension")))
            }
        }
    }
}
