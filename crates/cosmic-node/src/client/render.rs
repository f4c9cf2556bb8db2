//! Human-readable rendering of the API's JSON answers, and the JSON-lines output mode.

use serde_json::Value;

/// Renders `value` for a person: an object as aligned `key  value` lines, an array as one
/// line per element, a string as itself.
pub(crate) fn human(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            map.iter().map(|(key, value)| format!("{key:<width$}  {}", inline(value))).collect()
        }
        Value::Array(items) => items.iter().map(row).collect(),
        other => vec![inline(other)],
    }
}

/// One line for an element of a list: its fields as `key=value`, strings as themselves.
pub(crate) fn row(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}={}", inline(value)))
            .collect::<Vec<_>>()
            .join("  "),
        other => inline(other),
    }
}

/// A value on one line: strings without quotes, everything else as compact JSON.
pub(crate) fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// Compact JSON on one line, for `--json`.
pub(crate) fn json_line(value: &Value) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_align_and_lists_go_one_per_line() {
        let status = json!({"peer_id": "12D3", "listen": ["/ip4/a", "/ip4/b"], "peers": 2});
        let mut lines = human(&status);
        lines.sort();
        assert_eq!(lines, vec!["listen   /ip4/a,/ip4/b", "peer_id  12D3", "peers    2"]);
        let spaces = json!([{"id": "abc", "mode": "open"}, "plain"]);
        let lines = human(&spaces);
        assert!(lines[0] == "id=abc  mode=open" || lines[0] == "mode=open  id=abc", "{lines:?}");
        assert_eq!(lines[1], "plain");
        assert_eq!(human(&Value::Null), Vec::<String>::new());
        assert_eq!(human(&json!({"nested": {"a": 1}})), vec!["nested  {\"a\":1}"]);
    }
}
