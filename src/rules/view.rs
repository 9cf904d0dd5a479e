//! The JSON view of a rule, for `GET /rules`.

use super::model::{Action, Rule, TitleMatch};

impl Rule {
    /// A readable JSON view of the rule, for `GET /rules`.
    pub fn describe(&self) -> serde_json::Value {
        let titles: Vec<String> = self
            .titles
            .iter()
            .map(|t| match t {
                TitleMatch::Exact(s) => format!("= {s}"),
                TitleMatch::Prefix(s) => format!("prefix {s}"),
                TitleMatch::Regex(r) => format!("=~ {}", r.as_str()),
            })
            .collect();
        let actions: Vec<serde_json::Value> = self
            .actions
            .iter()
            .map(|a| match a {
                Action::Flag {
                    flag,
                    enabled,
                    project,
                    environment,
                    ..
                } => serde_json::json!({
                    "flag": flag, "state": if *enabled { "on" } else { "off" },
                    "project": project, "environment": environment, "revert": self.reverts(a),
                }),
                Action::Rollout {
                    flag,
                    percent,
                    strategy,
                    project,
                    environment,
                    ..
                } => serde_json::json!({
                    "flag": flag, "rollout": percent.get(), "strategy": strategy,
                    "project": project, "environment": environment, "revert": self.reverts(a),
                }),
                Action::Scale {
                    change, on_resolve, ..
                } => serde_json::json!({
                    "scale": change.to_string(), "on_resolve": on_resolve.map(|c| c.to_string()),
                    "revert": self.reverts(a),
                }),
            })
            .collect();
        let p = &self.policy;
        let dur = |d: Option<std::time::Duration>| d.map(|d| format!("{}s", d.as_secs()));
        serde_json::json!({
            "name": self.name,
            "catch_all": self.catch_all,
            "titles": titles,
            "labels": self.labels.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "actions": actions,
            "cooldown": dur(p.cooldown),
            "max_actions": p.max_actions.map(|(n, w)| format!("{n} per {}s", w.as_secs())),
            "escalate_after": dur(p.escalate_after),
            "dry_run": p.dry_run,
            "verify": p.verify,
            "notify": self.notify.iter().map(|n| serde_json::json!({
                "channel": n.channel,
                "on": n.on.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                "request": format!("{} {}", n.method, n.path.as_deref().unwrap_or("<secret path>")),
            })).collect::<Vec<_>>(),
        })
    }
}
