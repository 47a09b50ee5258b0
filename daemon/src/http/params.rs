//! Command parameters from the query string and a JSON-object or form body.

use bytes::Bytes;
use http::request::Parts;
use serde_json::{Map, Value};

use crate::error::Error;

/// Merges query and body parameters; a name given twice is an error rather than a guess.
pub fn parse(parts: &Parts, body: &Bytes) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    if let Some(q) = parts.uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            insert(&mut out, k.into_owned(), Value::String(v.into_owned()))?;
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(out);
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/json" | "" => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))?;
            let Value::Object(map) = v else {
                return Err(Error::BadRequest(
                    "the body must be a JSON object of parameters, e.g. {\"eventKey\":\"webhook.x\"}".into(),
                ));
            };
            for (k, v) in map {
                insert(&mut out, k, v)?;
            }
        }
        "application/x-www-form-urlencoded" => {
            for (k, v) in form_urlencoded::parse(body) {
                insert(&mut out, k.into_owned(), Value::String(v.into_owned()))?;
            }
        }
        // A pipeline sent as the body (pipeline.put, pipeline.run).
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| Error::BadRequest("the YAML body is not UTF-8".into()))?;
            insert(&mut out, "pipeline".into(), Value::String(text.to_string()))?;
        }
        other => {
            return Err(Error::BadRequest(format!(
                "parameters must come as a JSON object, a form or the query string, not {other}"
            )));
        }
    }
    Ok(out)
}

fn insert(out: &mut Map<String, Value>, k: String, v: Value) -> Result<(), Error> {
    if out.contains_key(&k) {
        return Err(Error::InvalidParam(format!(
            "parameter '{k}' is given more than once"
        )));
    }
    out.insert(k, v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, content_type: &str) -> Parts {
        http::Request::builder()
            .uri(uri)
            .header("content-type", content_type)
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    #[test]
    fn query_json_and_form_merge() {
        let p = parse(
            &parts("/x?a=1", "application/json"),
            &Bytes::from_static(br#"{"b": {"c": true}}"#),
        )
        .expect("parses");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"]["c"], true);
        let p = parse(
            &parts("/x", "application/x-www-form-urlencoded"),
            &Bytes::from_static(b"a=1&b=x+y"),
        )
        .expect("parses");
        assert_eq!(p["b"], "x y");
        let err = parse(
            &parts("/x?a=1", "application/json"),
            &Bytes::from_static(br#"{"a":2}"#),
        );
        assert!(
            err.expect_err("duplicate")
                .to_string()
                .contains("more than once")
        );
        let err = parse(
            &parts("/x", "application/json"),
            &Bytes::from_static(b"[1]"),
        );
        assert!(err.expect_err("array").to_string().contains("JSON object"));
    }
}
