//! The JSON of the Open Inference Protocol's REST side (KServe v2): requests into
//! [`Request`]s, answers and errors back into JSON.
//!
//! BYTES elements are JSON strings: their UTF-8 bytes, or, when the input's parameters say
//! `"content_type": "base64"` (as MLServer's codec does), the bytes the base64 text
//! encodes, for binary data such as images.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::families::online::{NamedTensor, Request, Signature, TensorSpec, Values};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferRequestJson {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson>,
    /// Which outputs to return; all of them when absent.
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Value,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
}

/// A request as the model reads it, with the id and output names to answer with.
pub struct ParsedRequest {
    pub id: Option<String>,
    pub request: Request,
    pub outputs: Option<Vec<String>>,
}

/// Parses an infer request body; an `Err` is the message of a 400 answer.
pub fn parse_request(body: &[u8]) -> Result<ParsedRequest, String> {
    let json: InferRequestJson = serde_json::from_slice(body)
        .map_err(|err| format!("the body is not a valid infer request: {err}"))?;
    let inputs = json.inputs.into_iter().map(parse_input).collect::<Result<Vec<_>, _>>()?;
    Ok(ParsedRequest {
        id: json.id,
        request: Request { inputs, parameters: json.parameters },
        outputs: json.outputs.map(|o| o.into_iter().map(|o| o.name).collect()),
    })
}

fn parse_input(input: InputJson) -> Result<NamedTensor, String> {
    let name = input.name;
    let shape = input
        .shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                format!("input {name:?}: shape {:?} has a negative dimension", input.shape)
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let mut elements = Vec::new();
    flatten(input.data, &mut elements);
    let base64 = input.parameters.get("content_type").and_then(Value::as_str) == Some("base64");
    let element = |at: usize| format!("input {name:?}: element {at}");
    let values = match input.datatype.as_str() {
        "BYTES" => Values::Bytes(
            elements
                .into_iter()
                .enumerate()
                .map(|(at, v)| match v {
                    Value::String(s) if base64 => STANDARD
                        .decode(s.as_bytes())
                        .map_err(|err| format!("{}: not base64 ({err})", element(at))),
                    Value::String(s) => Ok(s.into_bytes()),
                    other => Err(format!("{}: a string expected, got {other}", element(at))),
                })
                .collect::<Result<_, _>>()?,
        ),
        "INT64" => Values::Int64(numbers(elements, "an integer", element, Value::as_i64)?),
        "FP32" => {
            Values::Fp32(numbers(elements, "a number", element, |v| v.as_f64().map(|x| x as f32))?)
        }
        other => {
            return Err(format!(
                "input {name:?}: datatype {other:?} is not one shopnet's models take (BYTES, INT64, FP32)"
            ));
        }
    };
    Ok(NamedTensor { name, shape, values })
}

/// Every element read by `read`; one that is not `expected` is named by `element(at)`.
fn numbers<T>(
    elements: Vec<Value>,
    expected: &str,
    element: impl Fn(usize) -> String,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<Vec<T>, String> {
    elements
        .iter()
        .enumerate()
        .map(|(at, v)| {
            read(v).ok_or_else(|| format!("{}: {expected} expected, got {v}", element(at)))
        })
        .collect()
}

/// Row-major elements of nested arrays (the protocol allows nested or flat data).
fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// The answer to an infer request, only the asked-for outputs when it named some.
pub fn infer_response(
    model: &str,
    id: Option<&str>,
    outputs: Vec<NamedTensor>,
    wanted: Option<&[String]>,
) -> Result<Value, String> {
    let unknown = wanted.and_then(|w| w.iter().find(|w| !outputs.iter().any(|o| &o.name == *w)));
    if let Some(unknown) = unknown {
        let known: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        return Err(format!("unknown output {unknown:?} (the model gives {})", known.join(", ")));
    }
    let outputs: Vec<Value> = outputs
        .into_iter()
        .filter(|o| wanted.is_none_or(|w| w.contains(&o.name)))
        .map(|o| {
            let datatype = o.values.datatype().name();
            let data = match o.values {
                Values::Bytes(v) => v
                    .into_iter()
                    .map(|b| Value::String(String::from_utf8_lossy(&b).into_owned()))
                    .collect(),
                Values::Int64(v) => json!(v),
                // Through the f32's shortest decimal form: 0.57598984, not 0.5759897828102112.
                Values::Fp32(v) => v
                    .iter()
                    .map(|x| x.to_string().parse::<f64>().map_or(Value::Null, Value::from))
                    .collect(),
            };
            json!({ "name": o.name, "datatype": datatype, "shape": o.shape, "data": data })
        })
        .collect();
    let mut response = json!({ "model_name": model, "outputs": outputs });
    if let Some(id) = id {
        response["id"] = json!(id);
    }
    Ok(response)
}

/// `GET /v2/models/{name}`: inputs, outputs and the parameters the model reads.
pub fn model_metadata(model: &str, platform: &str, signature: &Signature) -> Value {
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({ "name": s.name, "datatype": s.datatype.name(), "shape": s.shape }))
            .collect()
    };
    let parameters: Map<String, Value> = signature
        .parameters
        .iter()
        .map(|(name, meaning)| (name.to_string(), json!(meaning)))
        .collect();
    json!({
        "name": model,
        "versions": ["1"],
        "platform": platform,
        "inputs": tensors(&signature.inputs),
        "outputs": tensors(&signature.outputs),
        "parameters": parameters,
    })
}

pub fn error_body(message: &str) -> Value {
    json!({ "error": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_base64_data_are_read_row_major() {
        let body = br#"{"id": "7", "parameters": {"k": 3}, "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]},
            {"name": "b", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "base64"}, "data": ["/wA="]}]}"#;
        let parsed = parse_request(body).unwrap();
        assert_eq!(parsed.id.as_deref(), Some("7"));
        assert_eq!(parsed.request.parameters["k"], json!(3));
        assert_eq!(parsed.request.inputs[0].values, Values::Int64(vec![1, 2, 3, 4]));
        assert_eq!(parsed.request.inputs[0].shape, vec![2, 2]);
        assert_eq!(parsed.request.inputs[1].values, Values::Bytes(vec![vec![0xff, 0x00]]));
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let message = |body: &str| parse_request(body.as_bytes()).err().unwrap();
        assert!(message("{\"inputs\": [").starts_with("the body is not a valid infer request"));
        assert_eq!(
            message(
                r#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "INT64", "data": [1]}]}"#
            ),
            "input \"x\": shape [-1] has a negative dimension"
        );
        assert_eq!(
            message(
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": ["a"]}]}"#
            ),
            "input \"x\": element 0: an integer expected, got \"a\""
        );
        assert_eq!(
            message(
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}]}"#
            ),
            "input \"x\": datatype \"FP16\" is not one shopnet's models take (BYTES, INT64, FP32)"
        );
    }

    #[test]
    fn answers_keep_only_the_asked_outputs() {
        let outputs = vec![
            NamedTensor {
                name: "label".into(),
                shape: vec![1],
                values: Values::Bytes(vec![b"pos".to_vec()]),
            },
            NamedTensor {
                name: "p".into(),
                shape: vec![1, 2],
                values: Values::Fp32(vec![0.25, 0.75]),
            },
        ];
        let wanted = vec!["p".to_string()];
        let answer = infer_response("m", Some("1"), outputs.clone(), Some(&wanted)).unwrap();
        assert_eq!(
            answer,
            json!({"model_name": "m", "id": "1", "outputs": [{"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]}]})
        );
        let unknown = vec!["q".to_string()];
        assert_eq!(
            infer_response("m", None, outputs, Some(&unknown)).err().unwrap(),
            "unknown output \"q\" (the model gives label, p)"
        );
    }
}
