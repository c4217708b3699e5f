//! PHP-style nested query strings (`filter[@id][0]=1&select[]=id`), as Bitrix24 reads GET, form
//! bodies and `batch` sub-commands, turned into JSON.

use serde_json::{Map, Value};

pub fn query_to_json(query: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let mut path: Vec<String> = Vec::new();
        let (head, mut rest) = match key.find('[') {
            Some(i) => (&key[..i], &key[i..]),
            None => (&key[..], ""),
        };
        path.push(head.to_string());
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            path.push(stripped[..end].to_string());
            rest = &stripped[end + 1..];
        }
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    root
}

fn insert(node: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    let map = node.as_object_mut().expect("made an object above");
    let key = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    let child = map.entry(key).or_insert(Value::Null);
    insert(child, rest, value);
}

/// Objects whose keys are 0..n become arrays, the way PHP's lists read.
pub fn listify(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let is_list =
                !map.is_empty() && (0..map.len()).all(|i| map.contains_key(&i.to_string()));
            if is_list {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(0), listify(v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, listify(v))).collect())
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_become_json() {
        let v = listify(query_to_json(
            "entityTypeId=1040&filter%5B%40id%5D%5B0%5D=5&filter[@id][1]=6&select[]=id&select[]=stageId",
        ));
        assert_eq!(
            v,
            json!({"entityTypeId": "1040", "filter": {"@id": ["5", "6"]}, "select": ["id", "stageId"]})
        );
    }
}
