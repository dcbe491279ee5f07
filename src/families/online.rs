//! Online inference: a trained model answering requests of named tensors, as the Open
//! Inference Protocol (KServe v2) frames them. Each family turns its tensors into examples
//! with the same preprocessing `score` uses ([`Online::parse`]) and predicts a batch of
//! examples gathered from several requests at once ([`Online::predict`]); [`Served`] is
//! what the server holds, with the checks every family shares (names, datatypes, shapes)
//! and the splitting of one batch's predictions back into per-request answers.

use anyhow::Result;

/// The tensor datatypes shopnet's models take and give, by their protocol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Bytes,
    Int64,
    Fp32,
}

impl Datatype {
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Bytes => "BYTES",
            Datatype::Int64 => "INT64",
            Datatype::Fp32 => "FP32",
        }
    }
}

/// One input or output of a model; `-1` in `shape` is a dimension of any size (the first
/// is always the number of examples).
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: &'static str,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    pub fn new(name: &'static str, datatype: Datatype, shape: &[i64]) -> Self {
        Self { name, datatype, shape: shape.to_vec() }
    }
}

#[derive(Debug, Clone)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Request parameters the model reads, with what they mean.
    pub parameters: Vec<(&'static str, String)>,
}

/// A tensor's elements, flattened row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Bytes(Vec<Vec<u8>>),
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Bytes(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Fp32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn datatype(&self) -> Datatype {
        match self {
            Values::Bytes(_) => Datatype::Bytes,
            Values::Int64(_) => Datatype::Int64,
            Values::Fp32(_) => Datatype::Fp32,
        }
    }

    fn extend(&mut self, other: Values) {
        match (self, other) {
            (Values::Bytes(a), Values::Bytes(b)) => a.extend(b),
            (Values::Int64(a), Values::Int64(b)) => a.extend(b),
            (Values::Fp32(a), Values::Fp32(b)) => a.extend(b),
            _ => unreachable!("predictions follow the signature's datatypes"),
        }
    }

    fn empty(datatype: Datatype) -> Values {
        match datatype {
            Datatype::Bytes => Values::Bytes(Vec::new()),
            Datatype::Int64 => Values::Int64(Vec::new()),
            Datatype::Fp32 => Values::Fp32(Vec::new()),
        }
    }
}

/// A named tensor of a request or a response.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// One inference request: its input tensors and parameters.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub inputs: Vec<NamedTensor>,
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

impl Request {
    /// The input `name`; [`Served::infer`] has checked that every declared input is there.
    pub fn input(&self, name: &str) -> &NamedTensor {
        self.inputs
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| unreachable!("input {name} was checked"))
    }
}

/// Why a request got no answer: the client's mistake (HTTP 400), or the model's (500).
#[derive(Debug, Clone, PartialEq)]
pub enum InferError {
    BadRequest(String),
    Internal(String),
}

/// A family's model, loaded for online inference.
pub trait Online {
    /// One example, preprocessed: what `predict` needs of it.
    type Example;

    fn signature(&self) -> &Signature;

    /// The examples of one request, whose inputs have the signature's names, datatypes
    /// and ranks and agree on the number of examples. An `Err` is the client's mistake.
    fn parse(&self, request: &Request) -> std::result::Result<Vec<Self::Example>, String>;

    /// One prediction per example, each a `Values` per output in signature order, of the
    /// output's datatype; examples may come from several requests.
    fn predict(&self, examples: &[Self::Example]) -> Result<Vec<Vec<Values>>>;

    /// An example to run once before the model is declared ready, so that the first
    /// request does not pay for kernel compilation and first allocations.
    fn warmup_example(&self) -> Self::Example;
}

/// What the server holds of a model: [`Online`] without its example type.
pub trait Served {
    fn signature(&self) -> &Signature;

    /// Answers a batch of requests, one result each: a request's own error does not touch
    /// the others, and all of the good ones run as one batch.
    fn infer(&self, requests: &[Request])
    -> Vec<std::result::Result<Vec<NamedTensor>, InferError>>;

    /// Runs the model once on a made-up example.
    fn warm_up(&self) -> Result<()>;
}

impl<T: Online> Served for T {
    fn signature(&self) -> &Signature {
        Online::signature(self)
    }

    fn warm_up(&self) -> Result<()> {
        self.predict(&[self.warmup_example()]).map(|_| ())
    }

    fn infer(
        &self,
        requests: &[Request],
    ) -> Vec<std::result::Result<Vec<NamedTensor>, InferError>> {
        let mut examples = Vec::new();
        // Per request: its examples' range in `examples`, or its error.
        let mut ranges = Vec::with_capacity(requests.len());
        for request in requests {
            let parsed = check_inputs(Online::signature(self), request)
                .and_then(|()| self.parse(request))
                .map_err(InferError::BadRequest);
            ranges.push(parsed.map(|parsed| {
                let start = examples.len();
                examples.extend(parsed);
                start..examples.len()
            }));
        }
        let predictions = if examples.is_empty() {
            Ok(Vec::new())
        } else {
            crate::base::unwind::caught(|| self.predict(&examples))
                .map_err(|panic| anyhow::anyhow!("the model failed: {panic}"))
                .and_then(|result| result)
        };
        let predictions = match predictions {
            Ok(predictions) => predictions,
            Err(err) => {
                let failed = InferError::Internal(format!("{err:#}"));
                return ranges.into_iter().map(|range| range.and(Err(failed.clone()))).collect();
            }
        };
        let outputs = &Online::signature(self).outputs;
        ranges
            .into_iter()
            .map(|range| range.map(|range| assemble(outputs, &predictions[range])))
            .collect()
    }
}

/// The checks every model's inputs share: known names, each declared input present once,
/// the declared datatype and rank, element counts that match the shape, and one number
/// of examples across inputs.
fn check_inputs(signature: &Signature, request: &Request) -> std::result::Result<(), String> {
    let mut examples = None;
    for tensor in &request.inputs {
        let Some(spec) = signature.inputs.iter().find(|s| s.name == tensor.name) else {
            let known: Vec<&str> = signature.inputs.iter().map(|s| s.name).collect();
            return Err(format!(
                "unknown input {:?} (the model takes {})",
                tensor.name,
                known.join(", ")
            ));
        };
        if request.inputs.iter().filter(|t| t.name == tensor.name).count() > 1 {
            return Err(format!("input {:?} is given more than once", tensor.name));
        }
        if tensor.values.datatype() != spec.datatype {
            return Err(format!(
                "input {:?}: datatype {} expected, got {}",
                spec.name,
                spec.datatype.name(),
                tensor.values.datatype().name()
            ));
        }
        let fits = tensor.shape.len() == spec.shape.len()
            && tensor.shape.iter().zip(&spec.shape).all(|(&d, &s)| s < 0 || d as i64 == s);
        if !fits {
            return Err(format!(
                "input {:?}: shape {:?} does not fit the model's {:?}",
                spec.name, tensor.shape, spec.shape
            ));
        }
        let elements = tensor.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements != Some(tensor.values.len()) {
            return Err(format!(
                "input {:?}: shape {:?} holds {} elements, the data has {}",
                spec.name,
                tensor.shape,
                elements.map_or("too many".into(), |n| n.to_string()),
                tensor.values.len()
            ));
        }
        match examples {
            Some(n) if n != tensor.shape[0] => {
                return Err(format!(
                    "inputs disagree on the number of examples ({n} and {})",
                    tensor.shape[0]
                ));
            }
            _ => examples = Some(tensor.shape[0]),
        }
    }
    for spec in &signature.inputs {
        if !request.inputs.iter().any(|t| t.name == spec.name) {
            return Err(format!("missing input {:?}", spec.name));
        }
    }
    match examples {
        Some(0) | None => Err("the request holds no examples".into()),
        Some(_) => Ok(()),
    }
}

/// One request's output tensors from its examples' predictions: `[n]` for an output of
/// one value per example, `[n, width]` otherwise.
fn assemble(outputs: &[TensorSpec], predictions: &[Vec<Values>]) -> Vec<NamedTensor> {
    outputs
        .iter()
        .enumerate()
        .map(|(at, spec)| {
            let mut values = Values::empty(spec.datatype);
            let width = predictions.first().map_or(0, |p| p[at].len());
            for prediction in predictions {
                values.extend(prediction[at].clone());
            }
            let shape = if spec.shape.len() == 1 {
                vec![predictions.len()]
            } else {
                vec![predictions.len(), width]
            };
            NamedTensor { name: spec.name.to_string(), shape, values }
        })
        .collect()
}

/// The outputs of a classifier: the predicted label and every class's probability.
pub fn class_outputs(classes: usize) -> Vec<TensorSpec> {
    vec![
        TensorSpec::new("label", Datatype::Bytes, &[-1]),
        TensorSpec::new("probabilities", Datatype::Fp32, &[-1, classes as i64]),
    ]
}

/// One example's [`class_outputs`] from its probabilities; ties go to the first class,
/// as in `score`'s files.
pub fn class_prediction(probabilities: &[f32], labels: &[String]) -> Vec<Values> {
    let best = crate::base::metrics::argmax_rows(probabilities, probabilities.len())[0] as usize;
    vec![
        Values::Bytes(vec![labels[best].clone().into_bytes()]),
        Values::Fp32(probabilities.to_vec()),
    ]
}

/// The elements of a BYTES input, at most `max_bytes` each.
pub fn byte_strings(
    tensor: &NamedTensor,
    max_bytes: usize,
) -> std::result::Result<Vec<&[u8]>, String> {
    let Values::Bytes(items) = &tensor.values else {
        unreachable!("datatypes were checked");
    };
    items
        .iter()
        .enumerate()
        .map(|(at, bytes)| {
            if bytes.len() > max_bytes {
                return Err(format!(
                    "input {:?}[{at}]: {} bytes, at most {max_bytes} are accepted",
                    tensor.name,
                    bytes.len()
                ));
            }
            Ok(bytes.as_slice())
        })
        .collect()
}

/// The UTF-8 texts of a BYTES input, at most `max_bytes` each.
pub fn texts(tensor: &NamedTensor, max_bytes: usize) -> std::result::Result<Vec<&str>, String> {
    byte_strings(tensor, max_bytes)?
        .into_iter()
        .enumerate()
        .map(|(at, bytes)| {
            std::str::from_utf8(bytes)
                .map_err(|err| format!("input {:?}[{at}]: not UTF-8 text ({err})", tensor.name))
        })
        .collect()
}

/// The integers of an INT64 input.
pub fn integers(tensor: &NamedTensor) -> &[i64] {
    match &tensor.values {
        Values::Int64(v) => v,
        _ => unreachable!("datatypes were checked"),
    }
}

/// A positive integer request parameter, `default` when absent, at most `max`.
pub fn count_parameter(
    request: &Request,
    name: &str,
    default: usize,
    max: usize,
) -> std::result::Result<usize, String> {
    let Some(value) = request.parameters.get(name) else {
        return Ok(default);
    };
    match value.as_u64() {
        Some(n) if n >= 1 && n as u128 <= max as u128 => Ok(n as usize),
        _ => Err(format!("parameter {name:?}: expected an integer from 1 to {max}, got {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles its one FP32 input; an element of 13 is the client's mistake.
    struct Doubler(Signature);

    impl Online for Doubler {
        type Example = f32;

        fn signature(&self) -> &Signature {
            &self.0
        }

        fn parse(&self, request: &Request) -> std::result::Result<Vec<f32>, String> {
            let Values::Fp32(v) = &request.input("x").values else { unreachable!() };
            if v.contains(&13.0) {
                return Err("13 is refused".into());
            }
            Ok(v.clone())
        }

        fn predict(&self, examples: &[f32]) -> Result<Vec<Vec<Values>>> {
            Ok(examples.iter().map(|x| vec![Values::Fp32(vec![x * 2.0, x * 3.0])]).collect())
        }

        fn warmup_example(&self) -> f32 {
            0.0
        }
    }

    fn doubler() -> Doubler {
        Doubler(Signature {
            inputs: vec![TensorSpec::new("x", Datatype::Fp32, &[-1])],
            outputs: vec![TensorSpec::new("y", Datatype::Fp32, &[-1, 2])],
            parameters: Vec::new(),
        })
    }

    fn request(values: Vec<f32>) -> Request {
        let shape = vec![values.len()];
        Request {
            inputs: vec![NamedTensor { name: "x".into(), shape, values: Values::Fp32(values) }],
            ..Request::default()
        }
    }

    #[test]
    fn a_batch_is_split_back_per_request_and_a_bad_request_touches_no_other() {
        let answers =
            doubler().infer(&[request(vec![1.0, 2.0]), request(vec![13.0]), request(vec![5.0])]);
        let first = answers[0].as_ref().unwrap();
        assert_eq!(first[0].shape, vec![2, 2]);
        assert_eq!(first[0].values, Values::Fp32(vec![2.0, 3.0, 4.0, 6.0]));
        assert_eq!(answers[1], Err(InferError::BadRequest("13 is refused".into())));
        assert_eq!(answers[2].as_ref().unwrap()[0].values, Values::Fp32(vec![10.0, 15.0]));
    }

    #[test]
    fn inputs_are_checked_against_the_signature() {
        let model = doubler();
        let mut bad = request(vec![1.0]);
        bad.inputs[0].name = "z".into();
        let mut wrong_type = request(vec![1.0]);
        wrong_type.inputs[0].values = Values::Int64(vec![1]);
        let mut wrong_count = request(vec![1.0, 2.0]);
        wrong_count.inputs[0].shape = vec![3];
        let mut wrong_rank = request(vec![1.0]);
        wrong_rank.inputs[0].shape = vec![1, 1];
        let messages: Vec<String> = [bad, wrong_type, wrong_count, wrong_rank, request(vec![])]
            .iter()
            .map(|r| match &model.infer(std::slice::from_ref(r))[0] {
                Err(InferError::BadRequest(message)) => message.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            messages,
            [
                "unknown input \"z\" (the model takes x)",
                "input \"x\": datatype FP32 expected, got INT64",
                "input \"x\": shape [3] holds 3 elements, the data has 2",
                "input \"x\": shape [1, 1] does not fit the model's [-1]",
                "the request holds no examples",
            ]
        );
    }
}
