//! Values the runner read from Secrets never leave it: every message, note and event of a
//! result has them replaced before the result is written or printed. OpenTofu and
//! CloudFormation quote values in their diagnostics (a failed validation rule, a failed
//! command), so each value is also looked for as JSON and HCL would escape it.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::contract::RunResult;

/// What a value is replaced with.
pub const MASK: &str = "(redacted)";
/// Shorter values are not looked for: masking every "ab" would garble every message and
/// protect nothing a guess would not find.
const MIN_LEN: usize = 3;

/// The values read from Secrets during one run.
#[derive(Debug, Default)]
pub struct Secrets(Mutex<BTreeSet<String>>);

impl Secrets {
    /// Remembers `value` (and each of its lines, which diagnostics may quote one by one).
    pub fn add(&self, value: &str) {
        let Ok(mut known) = self.0.lock() else {
            return;
        };
        let lines = value.lines().map(str::trim).filter(|l| l.len() >= MIN_LEN);
        for v in std::iter::once(value.trim()).chain(lines) {
            if v.len() < MIN_LEN {
                continue;
            }
            known.insert(v.to_string());
            let json = serde_json::to_string(v).unwrap_or_default();
            let json = json.trim_matches('"');
            known.insert(json.to_string());
            // HCL escapes like JSON and also doubles template markers.
            known.insert(json.replace("${", "$${").replace("%{", "%%{"));
        }
    }

    /// `text` with every known value masked, longest first (so that a value containing
    /// another is masked whole).
    pub fn redact(&self, text: &str) -> String {
        let Ok(known) = self.0.lock() else {
            return text.to_string();
        };
        let mut values: Vec<&String> = known.iter().collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values
            .into_iter()
            .fold(text.to_string(), |t, v| t.replace(v.as_str(), MASK))
    }

    /// Masks every free text of `result`.
    pub fn redact_result(&self, result: &mut RunResult) {
        if let Some(m) = result.message.as_mut() {
            *m = self.redact(m);
        }
        for note in &mut result.notes {
            *note = self.redact(note);
        }
        for event in &mut result.events {
            if let Some(reason) = event.reason.as_mut() {
                *reason = self.redact(reason);
            }
        }
        if let Some(limits) = result.drift.as_mut().and_then(|d| d.limits.as_mut()) {
            *limits = self.redact(limits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_and_their_escaped_forms() {
        let s = Secrets::default();
        s.add("hunter2\"x");
        s.add("ab");
        s.add("line one\nsecond-line ${x}");
        let text = concat!(
            r#"var.token is "hunter2\"x"; raw hunter2"x; "#,
            r#"hcl "second-line $${x}"; ab stays"#
        );
        let out = s.redact(text);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("second-line"), "{out}");
        assert!(out.contains("ab stays"), "{out}");
        assert_eq!(out.matches(MASK).count(), 3, "{out}");
    }

    #[test]
    fn masks_every_text_of_a_result() {
        let s = Secrets::default();
        s.add("s3cr3t");
        let mut r = RunResult {
            message: Some("Error running command 'echo s3cr3t'".into()),
            notes: vec!["s3cr3t".into()],
            ..Default::default()
        };
        s.redact_result(&mut r);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("s3cr3t"), "{json}");
    }
}
