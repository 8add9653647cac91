//! The OpenTofu (or Terraform) CLI, run as a child process in a workspace directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use super::EngineError;

/// How much of the engine's diagnostics a message quotes.
const MAX_DIAGNOSTICS: usize = 2000;

/// The errors in an engine's output: the `Error:` blocks if there are any, else the tail.
pub fn diagnostics(output: &str) -> String {
    let text = output.trim();
    let start = text
        .find("Error:")
        .or_else(|| text.find("│ Error:"))
        .unwrap_or(0);
    let cleaned: String = text[start..]
        .lines()
        .map(|l| l.trim_start_matches(['│', '╷', '╵', ' ']).trim_end())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if cleaned.len() <= MAX_DIAGNOSTICS {
        return cleaned;
    }
    let mut end = MAX_DIAGNOSTICS;
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &cleaned[..end])
}

/// The lock ID in a "Error acquiring the state lock" message.
fn lock_id(output: &str) -> Option<String> {
    if !output.contains("Error acquiring the state lock") {
        return None;
    }
    output
        .lines()
        .map(|l| l.trim_start_matches(['│', ' ']))
        .find_map(|l| l.strip_prefix("ID:").map(|id| id.trim().to_string()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanMode {
    Normal,
    Destroy,
    RefreshOnly,
}

pub struct Tofu {
    pub bin: PathBuf,
    /// Extra environment (CLI config, plugin cache, backend credentials).
    pub env: Vec<(String, String)>,
}

impl Tofu {
    async fn run(
        &self,
        dir: &Path,
        stage: &'static str,
        args: &[&str],
    ) -> Result<String, EngineError> {
        tracing::info!(stage, "running the engine");
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(dir)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| EngineError::Spawn {
                bin: self.bin.display().to_string(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let all = format!("{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        if let Some(lock_id) = lock_id(&all) {
            return Err(EngineError::Locked {
                lock_id,
                diagnostics: diagnostics(&all),
            });
        }
        Err(EngineError::Failed {
            stage,
            diagnostics: diagnostics(&all),
        })
    }

    fn json(stage: &'static str, text: &str) -> Result<Value, EngineError> {
        serde_json::from_str(text).map_err(|e| EngineError::BadOutput {
            stage,
            detail: e.to_string(),
        })
    }

    /// `OpenTofu v1.12.6` or `Terraform v1.9.0`.
    pub async fn version(&self, dir: &Path) -> Result<String, EngineError> {
        let out = self.run(dir, "version", &["version", "-json"]).await?;
        let v = Self::json("version", &out)?;
        let version = v["terraform_version"].as_str().unwrap_or("unknown");
        // OpenTofu keeps Terraform's key for compatibility; its binary name tells them apart.
        let name = self.bin.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let engine = if name.contains("terraform") {
            "Terraform"
        } else {
            "OpenTofu"
        };
        Ok(format!("{engine} v{version}"))
    }

    pub async fn init(&self, dir: &Path) -> Result<(), EngineError> {
        self.run(dir, "init", &["init", "-input=false", "-no-color"])
            .await
            .map(|_| ())
    }

    pub async fn select_workspace(&self, dir: &Path, workspace: &str) -> Result<(), EngineError> {
        if workspace == "default" {
            return Ok(());
        }
        self.run(
            dir,
            "init",
            &["workspace", "select", "-or-create", "-no-color", workspace],
        )
        .await
        .map(|_| ())
    }

    /// Plans into `out`: a normal plan, a destroy plan, or a refresh-only plan (what changed
    /// outside OpenTofu, without proposing changes).
    pub async fn plan(&self, dir: &Path, out: &Path, mode: PlanMode) -> Result<(), EngineError> {
        let out_arg = format!("-out={}", out.display());
        let mut args = vec![
            "plan",
            "-input=false",
            "-no-color",
            "-lock-timeout=30s",
            out_arg.as_str(),
        ];
        match mode {
            PlanMode::Normal => {}
            PlanMode::Destroy => args.push("-destroy"),
            PlanMode::RefreshOnly => args.push("-refresh-only"),
        }
        self.run(dir, "plan", &args).await.map(|_| ())
    }

    pub async fn show(&self, dir: &Path, plan: &Path) -> Result<Value, EngineError> {
        let plan = plan.display().to_string();
        let out = self
            .run(dir, "show", &["show", "-json", "-no-color", &plan])
            .await?;
        Self::json("show", &out)
    }

    /// Applies a saved plan: exactly what was planned (and approved).
    pub async fn apply(
        &self,
        dir: &Path,
        plan: &Path,
        stage: &'static str,
    ) -> Result<(), EngineError> {
        let plan = plan.display().to_string();
        self.run(
            dir,
            stage,
            &[
                "apply",
                "-input=false",
                "-no-color",
                "-lock-timeout=30s",
                &plan,
            ],
        )
        .await
        .map(|_| ())
    }

    pub async fn outputs(&self, dir: &Path) -> Result<Value, EngineError> {
        let out = self
            .run(dir, "output", &["output", "-json", "-no-color"])
            .await?;
        Self::json("output", &out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_error_blocks() {
        let out = "Initializing...\n╷\n│ Error: Invalid block definition\n│ \n│   on main.tf line 3:\n│    3: resource \"x\" {\n╵\n";
        let d = diagnostics(out);
        assert!(
            d.starts_with("Error: Invalid block definition\non main.tf line 3:"),
            "{d}"
        );
        assert!(!d.contains("Initializing"));
        let long = format!("Error: {}", "x".repeat(5000));
        assert!(diagnostics(&long).len() <= MAX_DIAGNOSTICS + 3);
    }

    #[test]
    fn finds_the_lock_id() {
        let out = "│ Error: Error acquiring the state lock\n│ \n│ Lock Info:\n│   ID:        3f2a9c1e-0000\n│   Path:      x\n";
        assert_eq!(lock_id(out).as_deref(), Some("3f2a9c1e-0000"));
        assert_eq!(lock_id("Error: something else\n  ID: 1"), None);
    }
}
