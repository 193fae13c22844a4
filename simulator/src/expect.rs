//! `expect` assertions of a scenario: a tiny language checked against what the run observed.
//!
//! Forms: `all_on("V")`; `bricked == N`; `max_devices_on("V") <op> N` or `N%` (of all devices);
//! `devices_on("V") <op> N|N%` (at the end); `power_cuts <op> N` (faults that struck); `rollout("ID").state == "S"`;
//! `quarantined("V") == "hw1,hw2"` (sorted, comma-separated); `all_on("V") by "36h"` (every device ran V
//! at some sample no later than that long after the start). Operators: `== != <= >= < >`.

use std::collections::BTreeMap;

/// What a run observed, for assertions.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub devices: u64,
    /// Final count per version.
    pub versions: BTreeMap<String, u64>,
    /// Highest count per version seen while sampling.
    pub max_versions: BTreeMap<String, u64>,
    pub rollouts: BTreeMap<String, String>,
    pub quarantined: BTreeMap<String, Vec<String>>,
    /// Devices not booting a known release at the end.
    pub bricked: u64,
    /// Power cuts that struck (from `[[fault]]` entries).
    pub power_cuts: u64,
    /// Seconds after the start when every device first ran a version (from the samples).
    pub all_on_since: BTreeMap<String, f64>,
}

/// A parse error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expect {text:?}: {why}")]
pub struct ExpectError {
    pub text: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    AllOn(String),
    AllOnBy(String, u64),
    Bricked,
    PowerCuts,
    MaxOn(String),
    On(String),
    RolloutState(String),
    Quarantined(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Le,
    Ge,
    Lt,
    Gt,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Percent(f64),
    Text(String),
}

/// A parsed assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    text: String,
    subject: Subject,
    check: Option<(Op, Value)>,
}

fn call<'a>(s: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let rest = s.strip_prefix(name)?.trim_start().strip_prefix("(\"")?;
    let end = rest.find("\")")?;
    Some((&rest[..end], &rest[end + 2..]))
}

fn split_op(s: &str) -> Option<(Op, &str)> {
    let s = s.trim();
    for (tok, op) in [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ] {
        if let Some(rest) = s.strip_prefix(tok) {
            return Some((op, rest.trim()));
        }
    }
    None
}

fn value(s: &str) -> Option<Value> {
    if let Some(t) = s.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Some(Value::Text(t.to_owned()));
    }
    if let Some(p) = s.strip_suffix('%') {
        return p.trim().parse().ok().map(Value::Percent);
    }
    s.parse().ok().map(Value::Number)
}

impl Expect {
    pub fn parse(text: &str) -> Result<Self, ExpectError> {
        let err = |why| ExpectError {
            text: text.to_owned(),
            why,
        };
        let t = text.trim();
        let (subject, rest) = if let Some((v, rest)) = call(t, "all_on") {
            match rest.trim().strip_prefix("by") {
                Some(by) => {
                    let span = by.trim().trim_matches('"');
                    let secs = crate::faults::Span::parse(span).map_err(|_| err("expected by \"36h\""))?;
                    (Subject::AllOnBy(v.into(), secs.0), "")
                }
                None => (Subject::AllOn(v.into()), rest),
            }
        } else if let Some((v, rest)) = call(t, "max_devices_on") {
            (Subject::MaxOn(v.into()), rest)
        } else if let Some((v, rest)) = call(t, "devices_on") {
            (Subject::On(v.into()), rest)
        } else if let Some((v, rest)) = call(t, "quarantined") {
            (Subject::Quarantined(v.into()), rest)
        } else if let Some((id, rest)) = call(t, "rollout") {
            let rest = rest
                .trim_start()
                .strip_prefix(".state")
                .ok_or_else(|| err("expected rollout(\"ID\").state"))?;
            (Subject::RolloutState(id.into()), rest)
        } else if let Some(rest) = t.strip_prefix("bricked") {
            (Subject::Bricked, rest)
        } else if let Some(rest) = t.strip_prefix("power_cuts") {
            (Subject::PowerCuts, rest)
        } else {
            return Err(err(
                "unknown subject (all_on, bricked, max_devices_on, devices_on, rollout, quarantined)",
            ));
        };
        let check = if rest.trim().is_empty() {
            None
        } else {
            let (op, v) = split_op(rest).ok_or_else(|| err("expected an operator (== != <= >= < >)"))?;
            Some((
                op,
                value(v).ok_or_else(|| err("expected a number, N% or a \"string\""))?,
            ))
        };
        if check.is_none() && !matches!(subject, Subject::AllOn(_) | Subject::AllOnBy(..)) {
            return Err(err("only all_on(...) stands without a comparison"));
        }
        Ok(Self {
            text: text.to_owned(),
            subject,
            check,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates against `o`; returns (passed, what was observed).
    pub fn eval(&self, o: &Observed) -> (bool, String) {
        let count = |m: &BTreeMap<String, u64>, v: &str| m.get(v).copied().unwrap_or(0);
        let actual = match &self.subject {
            Subject::AllOn(v) => {
                let n = count(&o.versions, v);
                return (
                    n == o.devices && o.devices > 0,
                    format!("{n} of {} on {v}", o.devices),
                );
            }
            Subject::AllOnBy(v, by) => {
                return match o.all_on_since.get(v) {
                    Some(at) => (*at <= *by as f64, format!("all on {v} at {:.1} h", at / 3600.0)),
                    None => (false, format!("never all on {v}")),
                };
            }
            Subject::Bricked => Value::Number(o.bricked as f64),
            Subject::PowerCuts => Value::Number(o.power_cuts as f64),
            Subject::MaxOn(v) => Value::Number(count(&o.max_versions, v) as f64),
            Subject::On(v) => Value::Number(count(&o.versions, v) as f64),
            Subject::RolloutState(id) => {
                Value::Text(o.rollouts.get(id).cloned().unwrap_or_else(|| "missing".into()))
            }
            Subject::Quarantined(v) => {
                Value::Text(o.quarantined.get(v).map(|q| q.join(",")).unwrap_or_default())
            }
        };
        let Some((op, want)) = &self.check else {
            return (false, "no comparison".into());
        };
        let shown = match &actual {
            Value::Number(n) => format!("{n}"),
            Value::Text(t) => format!("{t:?}"),
            Value::Percent(p) => format!("{p}%"),
        };
        (compare(&actual, *op, want, o.devices), shown)
    }
}

fn compare(actual: &Value, op: Op, want: &Value, devices: u64) -> bool {
    let num = |v: &Value| match v {
        Value::Number(n) => Some(*n),
        Value::Percent(p) => Some(p / 100.0 * devices as f64),
        Value::Text(_) => None,
    };
    match (actual, want) {
        (Value::Text(a), Value::Text(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        _ => match (num(actual), num(want)) {
            (Some(a), Some(b)) => match op {
                Op::Eq => (a - b).abs() < 1e-9,
                Op::Ne => (a - b).abs() >= 1e-9,
                Op::Le => a <= b + 1e-9,
                Op::Ge => a + 1e-9 >= b,
                Op::Lt => a < b,
                Op::Gt => a > b,
            },
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Observed {
        Observed {
            devices: 100,
            versions: [("2.0.0".to_string(), 100)].into(),
            max_versions: [("2.0.0".to_string(), 100), ("2.1.0".to_string(), 5)].into(),
            rollouts: [("r2".to_string(), "reverted".to_string())].into(),
            quarantined: [("2.1.0".to_string(), vec!["kiosk-arm".to_string()])].into(),
            bricked: 0,
            power_cuts: 3,
            all_on_since: [("2.0.0".to_string(), 30.0 * 3600.0)].into(),
        }
    }

    #[test]
    fn assertions_evaluate_as_written() {
        let table = [
            ("all_on(\"2.0.0\")", true),
            ("all_on(\"2.1.0\")", false),
            ("bricked == 0", true),
            ("power_cuts >= 1", true),
            ("max_devices_on(\"2.1.0\") <= 5%", true),
            ("max_devices_on(\"2.1.0\") <= 4%", false),
            ("max_devices_on(\"2.1.0\") < 6", true),
            ("devices_on(\"2.0.0\") >= 100", true),
            ("rollout(\"r2\").state == \"reverted\"", true),
            ("rollout(\"r9\").state == \"reverted\"", false),
            ("quarantined(\"2.1.0\") == \"kiosk-arm\"", true),
            ("quarantined(\"2.0.0\") == \"\"", true),
            ("all_on(\"2.0.0\") by \"36h\"", true),
            ("all_on(\"2.0.0\") by \"1d\"", false),
            ("all_on(\"2.1.0\") by \"36h\"", false),
        ];
        for (text, want) in table {
            let e = Expect::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.eval(&observed()).0, want, "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "devices == 3",
            "bricked",
            "bricked ~ 3",
            "max_devices_on(\"x\") <= many",
            "rollout(\"r\") == \"x\"",
        ] {
            assert!(Expect::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
