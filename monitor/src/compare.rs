//! How often a shadow version disagrees with the primary, judged from the comparison records
//! the filter ships (docs/shadow-compare.md). Pure: the collector counts what this decides.
//!
//! A record holds the primary's answer, the shadow's and, with `noise`, the primary's again.
//! Each pair (primary–shadow, primary–noise) is judged the same way:
//! - different statuses (or one missing): a status mismatch, and every row disagrees;
//! - both failed with the same status: they agree;
//! - both 2xx: outputs are matched by name, row by row (the first dimension is the row). An
//!   output missing, or with another shape or datatype, makes every row disagree. Otherwise a
//!   classification output's row disagrees when its arg-max differs, a numeric one's when any
//!   element is beyond `atol + rtol * |primary|` (numpy's `isclose`).
//!
//! The shadow's disagreement minus the noise's is what a rollout judges: two answers of the
//! same version that already differ (nondeterministic kernels, batch-size effects) say nothing
//! against the shadow.

use serde_json::Value;

/// How an output's rows are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Classification for outputs of shape `[rows, classes]` with 2 or more classes.
    Auto,
    Classification,
    Numeric,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "auto" => Some(Kind::Auto),
            "classification" => Some(Kind::Classification),
            "numeric" => Some(Kind::Numeric),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub atol: f64,
    pub rtol: f64,
    pub kind: Kind,
}

/// One answer: its status (`None`: none came) and its body.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: Option<u16>,
    pub body: &'a Value,
}

/// One pair judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    pub status_mismatch: bool,
    pub rows: u64,
    pub rows_disagreeing: u64,
    /// Rows of classification outputs whose arg-max differs.
    pub rows_argmax_differ: u64,
    /// Rows with an element beyond the tolerance, in any output (classification ones too).
    pub rows_beyond_tolerance: u64,
}

/// Why a pair could not be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unjudged {
    /// Not an Open Inference Protocol response with JSON outputs (withheld for size, binary
    /// tensors, another protocol).
    NotJudgeable,
}

fn is_ok(s: Option<u16>) -> bool {
    s.is_some_and(|s| (200..300).contains(&s))
}

/// One tensor of a response, flattened.
struct Tensor<'a> {
    shape: Vec<u64>,
    datatype: &'a str,
    data: Vec<&'a Value>,
}

impl Tensor<'_> {
    fn rows(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1).max(1)
    }

    fn row_len(&self) -> usize {
        usize::try_from(self.shape.iter().skip(1).product::<u64>()).unwrap_or(usize::MAX)
    }

    fn is_classification(&self, kind: Kind) -> bool {
        let numeric = !matches!(self.datatype, "BYTES" | "BOOL");
        match kind {
            Kind::Classification => numeric,
            Kind::Numeric => false,
            Kind::Auto => numeric && self.shape.len() == 2 && self.shape.get(1).is_some_and(|&c| c >= 2),
        }
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// The outputs of an OIP response by name, or `None` when the body is not one.
fn outputs(body: &Value) -> Option<Vec<(&str, Tensor<'_>)>> {
    let list = body.get("outputs")?.as_array()?;
    let mut out = Vec::with_capacity(list.len());
    for o in list {
        let name = o.get("name")?.as_str()?;
        let shape = o.get("shape")?.as_array()?.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>()?;
        let datatype = o.get("datatype")?.as_str()?;
        let mut data = Vec::new();
        flatten(o.get("data")?, &mut data);
        let t = Tensor { shape, datatype, data };
        // Data that does not fill its shape is not a tensor to judge.
        if u64::try_from(t.data.len()).ok() != Some(t.shape.iter().product::<u64>()) {
            return None;
        }
        out.push((name, t));
    }
    Some(out)
}

fn close(a: &Value, b: &Value, r: &Rule) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= r.atol + r.rtol * x.abs(),
        _ => a == b,
    }
}

fn argmax(row: &[&Value]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in row.iter().enumerate() {
        let x = v.as_f64()?;
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// Judges `other` against `primary`.
pub fn judge(primary: Answer<'_>, other: Answer<'_>, r: &Rule) -> Result<Verdict, Unjudged> {
    let primary_outputs = outputs(primary.body);
    let rows = primary_outputs.as_ref().and_then(|o| o.first()).map_or(1, |(_, t)| t.rows());
    if primary.status != other.status {
        return Ok(Verdict { status_mismatch: true, rows, rows_disagreeing: rows, ..Verdict::default() });
    }
    if !is_ok(primary.status) {
        return Ok(Verdict { rows: 1, ..Verdict::default() });
    }
    let (Some(p), Some(o)) = (primary_outputs, outputs(other.body)) else { return Err(Unjudged::NotJudgeable) };
    let all = Verdict { rows, rows_disagreeing: rows, ..Verdict::default() };
    let rows_usize = usize::try_from(rows).unwrap_or(usize::MAX);
    let mut disagree = vec![false; rows_usize];
    let mut argmax_differ = vec![false; rows_usize];
    let mut beyond = vec![false; rows_usize];
    for (name, pt) in &p {
        let Some((_, ot)) = o.iter().find(|(n, _)| n == name) else { return Ok(all) };
        if ot.shape != pt.shape || ot.datatype != pt.datatype || pt.rows() != rows {
            return Ok(all);
        }
        let len = pt.row_len().max(1);
        let classification = pt.is_classification(r.kind);
        for (i, (a, b)) in pt.data.chunks(len).zip(ot.data.chunks(len)).enumerate() {
            let far = a.iter().zip(b).any(|(x, y)| !close(x, y, r));
            let differ = classification && argmax(a) != argmax(b);
            if let (Some(f), Some(d), Some(m)) = (beyond.get_mut(i), disagree.get_mut(i), argmax_differ.get_mut(i)) {
                *f |= far;
                *m |= differ;
                *d |= if classification { differ } else { far };
            }
        }
    }
    let n = |v: &[bool]| v.iter().filter(|&&x| x).count() as u64;
    Ok(Verdict {
        status_mismatch: false,
        rows,
        rows_disagreeing: n(&disagree),
        rows_argmax_differ: n(&argmax_differ),
        rows_beyond_tolerance: n(&beyond),
    })
}

/// A comparison record, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub model: String,
    pub primary: String,
    pub shadow: String,
    /// Primary against shadow, and primary against itself (when the record has the noise).
    pub pairs: Vec<(Pair, Result<Verdict, Unjudged>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pair {
    Shadow,
    Noise,
}

impl Pair {
    pub fn as_str(self) -> &'static str {
        match self {
            Pair::Shadow => "shadow",
            Pair::Noise => "noise",
        }
    }
}

/// A record of `"kind": "comparison"` judged; `None` for any other record (a payload sample)
/// and for one without the fields a comparison has.
pub fn judge_record(v: &Value) -> Option<Judged> {
    if v.get("kind")?.as_str()? != "comparison" {
        return None;
    }
    let s = v.get("compare")?;
    let rule = Rule {
        atol: s.get("atol")?.as_f64()?,
        rtol: s.get("rtol")?.as_f64()?,
        kind: Kind::parse(s.get("output")?.as_str()?)?,
    };
    let answer = |key: &str| -> Option<Answer<'_>> {
        let a = v.get(key)?;
        let status = match a.get("status") {
            None | Some(Value::Null) => None,
            Some(s) => Some(u16::try_from(s.as_u64()?).ok()?),
        };
        Some(Answer { status, body: a.get("body").unwrap_or(&Value::Null) })
    };
    let name = |key: &str| v.get(key)?.get("version")?.as_str().map(str::to_owned);
    let primary = answer("primary")?;
    let mut pairs = vec![(Pair::Shadow, judge(primary, answer("shadow")?, &rule))];
    if let Some(noise) = answer("noise") {
        pairs.push((Pair::Noise, judge(primary, noise, &rule)));
    }
    Some(Judged {
        model: v.get("model")?.as_str()?.to_owned(),
        primary: name("primary")?,
        shadow: name("shadow")?,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RULE: Rule = Rule { atol: 1e-5, rtol: 1e-3, kind: Kind::Auto };

    fn ok(body: &Value) -> Answer<'_> {
        Answer { status: Some(200), body }
    }

    fn probs(rows: &[[f64; 3]]) -> Value {
        json!({"outputs": [{"name": "p", "shape": [rows.len(), 3], "datatype": "FP32", "data": rows}]})
    }

    #[test]
    fn classification_rows_disagree_when_their_argmax_does() {
        let a = probs(&[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]);
        // Row 0: same arg-max, other numbers; row 1: another arg-max; rows 2-3: identical.
        let b = probs(&[[0.2, 0.6, 0.2], [0.3, 0.5, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]);
        let v = judge(ok(&a), ok(&b), &RULE).unwrap();
        assert_eq!(
            v,
            Verdict {
                status_mismatch: false,
                rows: 4,
                rows_disagreeing: 1,
                rows_argmax_differ: 1,
                rows_beyond_tolerance: 2
            }
        );
        // Judged as numbers instead, both changed rows disagree.
        let numeric = Rule { kind: Kind::Numeric, ..RULE };
        assert_eq!(judge(ok(&a), ok(&b), &numeric).unwrap().rows_disagreeing, 2);
        assert_eq!(judge(ok(&a), ok(&a), &RULE).unwrap().rows_disagreeing, 0);
    }

    #[test]
    fn numeric_rows_are_judged_with_numpys_isclose() {
        let out = |d: Value| json!({"outputs": [{"name": "y", "shape": [3], "datatype": "FP64", "data": d}]});
        let a = out(json!([100.0, 1.0, 0.0]));
        // Within atol + rtol*|a| = 0.10001 for 100; beyond 0.00101 for 1; beyond 1e-5 for 0.
        let b = out(json!([100.1, 1.002, 2e-5]));
        let v = judge(ok(&a), ok(&b), &RULE).unwrap();
        assert_eq!((v.rows, v.rows_disagreeing, v.rows_beyond_tolerance, v.rows_argmax_differ), (3, 2, 2, 0));
    }

    #[test]
    fn statuses_and_shapes_that_differ_make_every_row_disagree() {
        let a = probs(&[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]);
        let err = json!({"error": "boom"});
        let failed = Answer { status: Some(503), body: &err };
        let v = judge(ok(&a), failed, &RULE).unwrap();
        assert_eq!((v.status_mismatch, v.rows, v.rows_disagreeing), (true, 2, 2));
        let none = Answer { status: None, body: &Value::Null };
        assert!(judge(ok(&a), none, &RULE).unwrap().status_mismatch);
        // Both failed alike: they agree.
        assert_eq!(judge(failed, failed, &RULE).unwrap(), Verdict { rows: 1, ..Verdict::default() });
        let fewer = probs(&[[0.1, 0.7, 0.2]]);
        assert_eq!(judge(ok(&a), ok(&fewer), &RULE).unwrap().rows_disagreeing, 2);
        let renamed = json!({"outputs": [{"name": "q", "shape": [2, 3], "datatype": "FP32", "data": [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]}]});
        assert_eq!(judge(ok(&a), ok(&renamed), &RULE).unwrap().rows_disagreeing, 2);
        // Withheld or binary bodies cannot be judged.
        let withheld = json!("[WITHHELD]: sample over its size bound");
        assert_eq!(judge(ok(&a), ok(&withheld), &RULE), Err(Unjudged::NotJudgeable));
        let short = json!({"outputs": [{"name": "p", "shape": [2, 3], "datatype": "FP32", "data": [1]}]});
        assert_eq!(judge(ok(&a), ok(&short), &RULE), Err(Unjudged::NotJudgeable));
    }

    #[test]
    fn a_record_is_judged_for_the_shadow_and_the_noise() {
        let a = probs(&[[0.1, 0.7, 0.2]]);
        let b = probs(&[[0.7, 0.1, 0.2]]);
        let record = json!({"schema": 1, "kind": "comparison", "model": "m",
            "compare": {"atol": 1e-5, "rtol": 1e-3, "output": "auto"},
            "request": {"body": null},
            "primary": {"version": "v1", "status": 200, "body": a},
            "shadow": {"version": "v2", "status": 200, "body": b},
            "noise": {"version": "v1", "status": 200, "body": a}});
        let j = judge_record(&record).unwrap();
        assert_eq!((j.model.as_str(), j.primary.as_str(), j.shadow.as_str()), ("m", "v1", "v2"));
        assert_eq!(j.pairs[0].0, Pair::Shadow);
        assert_eq!(j.pairs[0].1.unwrap().rows_disagreeing, 1);
        assert_eq!(j.pairs[1].0, Pair::Noise);
        assert_eq!(j.pairs[1].1.unwrap().rows_disagreeing, 0);
        assert_eq!(judge_record(&json!({"schema": 1, "model": "m"})), None, "a payload sample");
        assert_eq!(judge_record(&json!({"kind": "comparison"})), None, "no fields");
    }
}
