//! The config file's `"prices"` (CONTRACT §14): US dollars per million tokens by model,
//! what turns the API back-ends' token counts into a cost.

use serde_json::{Map, Value};

use crate::domain::{Price, Prices};

/// Parses `"prices": {"<model>": {"input_per_mtok", "output_per_mtok",
/// "cache_read_per_mtok"?, "cache_creation_per_mtok"?}}`; the error names the model.
pub(super) fn parse(root: &Map<String, Value>) -> Result<Prices, String> {
    let entries = match root.get("prices") {
        None | Some(Value::Null) => return Ok(Prices::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err("'prices' must be an object of model names to prices".into()),
    };
    let mut prices = Prices::new();
    for (model, entry) in entries {
        let price: Price = serde_json::from_value(entry.clone())
            .map_err(|e| format!("prices['{model}']: {e} (expected input_per_mtok and output_per_mtok numbers)"))?;
        price.check().map_err(|e| format!("prices['{model}']: {e}"))?;
        prices.insert(model.trim().to_owned(), price);
    }
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_and_names_bad_entries() {
        let p = parse(&root(
            json!({"prices": {"m": {"input_per_mtok": 3, "output_per_mtok": 15}}}),
        ))
        .unwrap();
        assert_eq!(p["m"].input_per_mtok, 3.0);
        assert!(parse(&root(json!({}))).unwrap().is_empty());
        for bad in [
            json!({"prices": []}),
            json!({"prices": {"m": {"input_per_mtok": 3}}}),
            json!({"prices": {"m": {"input_per_mtok": 3, "output_per_mtok": -1}}}),
            json!({"prices": {"m": {"input_per_mtok": 3, "output_per_mtok": 1, "typo": 2}}}),
        ] {
            let e = parse(&root(bad.clone())).unwrap_err();
            assert!(e.contains("prices"), "{bad}: {e}");
        }
    }
}
