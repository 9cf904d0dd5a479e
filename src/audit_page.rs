//! `GET /audit` for people: the audit trail as a timeline, one card per occurrence
//! (firing, acted, repeats, resolved, reverted), each decision as a sentence with its
//! reason. [`render`] is pure: entries + now + query + Unleash base URL in, one
//! self-contained HTML page out (inline CSS, no script, no external asset); everything
//! shown is escaped and only http(s) URLs become links. The route (src/http/audit.rs)
//! reads the audit and answers JSON or this page.

use crate::audit::{self, Entry, Event};
use crate::problem::Status;
use crate::report::ActionTarget;

/// The page's own Content-Security-Policy: inline styles, nothing else loads or runs.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; \
form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Entries the page reads when no `limit` is given (bookkeeping entries count too).
pub const DEFAULT_LIMIT: usize = 1000;

/// The filters as given in the URL (decoded), echoed back into the form.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub rule: Option<String>,
    pub flag: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    /// What is wrong with them, shown above the form (the page answers 400).
    pub error: Option<String>,
}

/// Outcomes offered in the filter's list (any other value given is kept as well).
const OUTCOMES: [&str; 12] = [
    "acted",
    "reverted",
    "failed",
    "circuit_open",
    "budget_exhausted",
    "skipped",
    "already_handled",
    "revert_skipped",
    "dry_run",
    "in_progress",
    "no_matching_rule",
    "error",
];

/// The page under construction: `t` appends markup, `e` appends escaped text.
struct W(String);

// Not inlined: hundreds of call sites would each grow the wasm.
impl W {
    #[inline(never)]
    fn t(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    #[inline(never)]
    fn e(&mut self, s: &str) -> &mut Self {
        for c in s.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        self
    }

    /// `a_b` as "a b".
    fn words(&mut self, name: &str) -> &mut Self {
        self.e(&name.replace('_', " "))
    }

    /// A link when `url` is http(s) (never `javascript:` or `data:`), else the text.
    fn link(&mut self, url: &str, text: &str, class: &str) -> &mut Self {
        let url = url.trim_start();
        let scheme = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if scheme.starts_with("http://") || scheme.starts_with("https://") {
            self.t("<a class=\"").t(class).t("\" href=\"").e(url);
            self.t("\" rel=\"noopener noreferrer\">").e(text).t("</a>")
        } else {
            self.t("<span class=\"nolink ").t(class).t("\">").e(text);
            self.t(": ").e(url).t("</span>")
        }
    }

    /// A link to this page filtered by `name=value`.
    fn filter_link(&mut self, name: &str, value: &str) -> &mut Self {
        self.t("<a class=\"filter\" href=\"/audit?").t(name).t("=");
        self.t(&percent_encode(value)).t("\">").e(value).t("</a>")
    }
}

pub fn html_escape(s: &str) -> String {
    let mut w = W(String::with_capacity(s.len()));
    w.e(s);
    w.0
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// The flag's page in Unleash's UI.
pub fn unleash_flag_url(unleash_url: &str, project: &str, flag: &str) -> String {
    let mut u = unleash_url.trim_end_matches('/').to_string();
    u.push_str("/projects/");
    u.push_str(&percent_encode(project));
    u.push_str("/features/");
    u.push_str(&percent_encode(flag));
    u
}

/// "42 s ago", "3 min ago", "2 h 5 min ago", "4 d ago".
pub fn age(now_ms: i64, at_ms: i64) -> String {
    let s = now_ms.saturating_sub(at_ms) / 1000;
    let (n, unit, rest) = match s {
        i64::MIN..=0 => return "just now".into(),
        1..=59 => (s, " s", 0),
        60..=3599 => (s / 60, " min", 0),
        3600..=86_399 => (s / 3600, " h", s % 3600 / 60),
        _ => (s / 86_400, " d", 0),
    };
    let n = n.to_string();
    if rest > 0 {
        return [&n, unit, " ", &rest.to_string(), " min ago"].concat();
    }
    [&n, unit, " ago"].concat()
}

fn on_off(enabled: bool) -> &'static str {
    if enabled {
        "on"
    } else {
        "off"
    }
}

/// What an action target changes, as words: "EnablePromotion off in production".
fn change(t: &ActionTarget) -> String {
    match t {
        ActionTarget::Flag {
            flag,
            environment,
            enabled,
            ..
        } => [flag, " ", on_off(*enabled), " in ", environment].concat(),
        ActionTarget::Rollout {
            flag,
            environment,
            rollout,
            ..
        } => [
            flag,
            "'s rollout to ",
            &rollout.to_string(),
            "% in ",
            environment,
        ]
        .concat(),
        ActionTarget::Scale {
            value,
            service,
            namespace,
        } => {
            let what = match (service, namespace) {
                (Some(s), Some(n)) => [n, "/", s].concat(),
                (Some(s), None) => s.clone(),
                _ => "the service".into(),
            };
            [&what, " by ", value].concat()
        }
    }
}

/// How to say what was done to a target: ("turned", "turn"), ...
fn verbs(t: &ActionTarget) -> (&'static str, &'static str) {
    match t {
        ActionTarget::Flag { .. } => ("turned ", "failed to turn "),
        ActionTarget::Rollout { .. } => ("set ", "failed to set "),
        ActionTarget::Scale { .. } => ("scaled ", "failed to scale "),
    }
}

/// A colour class for an event name: unknown (future) events get a neutral one.
fn tone(event: &str) -> &'static str {
    match event {
        "acted" | "reverted" | "notified" => "ok",
        "failed" | "error" | "circuit_open" => "bad",
        "skipped" | "revert_skipped" | "in_progress" | "dry_run" | "budget_exhausted"
        | "notify_failed" => "warn",
        "already_handled" | "no_matching_rule" | "received" | "matched" | "resolved" => "quiet",
        _ => "other",
    }
}

/// One decision as a sentence (plain text; escaped by the caller).
fn sentence(e: &Entry, first_acted_ms: Option<i64>, now_ms: i64) -> String {
    let detail = e.detail.as_deref().unwrap_or("");
    let reason = e.summary.as_deref().unwrap_or(&e.title);
    let mut head = match (e.event, &e.action) {
        (Event::Acted, Some(t)) => return [verbs(t).0, &change(t), ": ", reason].concat(),
        (Event::Failed, Some(t)) => [verbs(t).1, &change(t)].concat(),
        (Event::Reverted, Some(ActionTarget::Flag { flag, enabled, .. })) => {
            return ["reverted: ", flag, " back ", on_off(*enabled)].concat()
        }
        (Event::Reverted, Some(ActionTarget::Rollout { flag, rollout, .. })) => {
            let pct = rollout.to_string();
            return ["reverted: ", flag, "'s rollout back to ", &pct, "%"].concat();
        }
        (Event::Reverted, Some(t)) => return ["reverted: scaled ", &change(t)].concat(),
        (Event::RevertSkipped, Some(t)) => ["not reverted (", &change(t), ")"].concat(),
        (Event::AlreadyHandled, _) => {
            let head = match first_acted_ms {
                Some(at) => ["already handled (first acted ", &age(now_ms, at), ")"].concat(),
                None => "already handled".into(),
            };
            if detail == "already handled" {
                return head;
            }
            head
        }
        (Event::CircuitOpen, _) => {
            let d = detail.strip_prefix("CIRCUIT OPEN: ").unwrap_or(detail);
            return ["circuit open: ", d].concat();
        }
        (Event::NoMatchingRule, _) => return "no matching rule: nothing done".into(),
        (Event::InProgress, _) => {
            return "in progress: another delivery was acting; the sender retries".into()
        }
        (Event::DryRun, _) => return detail.into(),
        // "notify slack on act: sent POST … (200)"
        (Event::Notified, _) => {
            return ["told ", detail.strip_prefix("notify ").unwrap_or(detail)].concat()
        }
        (Event::NotifyFailed, _) => {
            return [
                "could not tell ",
                detail.strip_prefix("notify ").unwrap_or(detail),
            ]
            .concat()
        }
        // Skipped, Error, and events this page has no sentence for (newer versions
        // add some): the event's name, what it touched, and the detail.
        (ev, target) => {
            let mut head = ev.name().replace('_', " ");
            if let Some(t) = target {
                head = [&head, " (", &change(t), ")"].concat();
            }
            head
        }
    };
    if !detail.is_empty() {
        head = [&head, ": ", detail].concat();
    }
    head
}

struct Group<'a> {
    occurrence: &'a str,
    /// Oldest first.
    entries: Vec<&'a Entry>,
}

/// Occurrences, newest activity first; entries within, oldest first.
fn groups(entries: &[Entry]) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for e in entries {
        match out.iter_mut().find(|g| g.occurrence == e.occurrence) {
            Some(g) => g.entries.push(e),
            None => out.push(Group {
                occurrence: &e.occurrence,
                entries: vec![e],
            }),
        }
    }
    // `read` gives newest first (by delivery, then within each); no sort needed (and
    // none linked: a sort instantiation costs kilobytes of wasm).
    for g in &mut out {
        g.entries.reverse();
    }
    out
}

fn bookkeeping(e: &Entry) -> bool {
    matches!(e.event, Event::Received | Event::Matched)
}

fn time_cell(w: &mut W, at: &str, at_ms: i64, now_ms: i64) {
    // "2026-12-07T10:01:02.345Z": "10:01:02" shown, the full stamp in the title.
    w.t("<time datetime=\"")
        .e(at)
        .t("\" title=\"")
        .e(at)
        .t("\">");
    w.e(at.get(11..19).unwrap_or(at)).t(" <span class=\"age\">");
    w.t(&age(now_ms, at_ms)).t("</span></time>");
}

fn row(w: &mut W, e: &Entry, name: &str, text: &str, detail: Option<&str>, now_ms: i64) {
    let tone = tone(name);
    w.t("<li class=\"step tone-")
        .t(tone)
        .t("\" data-event=\"")
        .e(name);
    w.t("\" data-delivery=\"")
        .t(&e.delivery.to_string())
        .t("\">");
    time_cell(w, &e.at, e.at_ms, now_ms);
    w.t("<span class=\"badge tone-")
        .t(tone)
        .t("\">")
        .words(name)
        .t("</span>");
    w.t("<p class=\"sentence\">").e(text).t("</p>");
    if let Some(d) = detail {
        w.t("<p class=\"detail\">").e(d).t("</p>");
    }
    w.t("</li>");
}

fn render_group(w: &mut W, g: &Group, now_ms: i64, unleash_url: &str) {
    let (first, last) = (g.entries[0], g.entries[g.entries.len() - 1]);
    let latest = |f: fn(&Entry) -> Option<&str>| g.entries.iter().rev().find_map(|e| f(e));
    let summary = latest(|e| e.summary.as_deref());
    let rule = latest(|e| e.rule.as_deref());
    let links = g
        .entries
        .iter()
        .rev()
        .map(|e| &e.links)
        .find(|l| !l.is_empty());
    let first_acted_ms = g
        .entries
        .iter()
        .find(|e| e.event == Event::Acted)
        .map(|e| e.at_ms);

    // The timeline: decisions as sentences; a delivery that left nothing but
    // bookkeeping (a resolve with nothing to undo) as one row saying so.
    let mut rows = W(String::new());
    let mut state = String::from("received");
    let (mut deliveries, mut firing, mut resolved) = (0, 0, 0);
    let mut reasons: Vec<&str> = Vec::new();
    let mut flags: Vec<(&str, &str)> = Vec::new();
    for (i, e) in g.entries.iter().enumerate() {
        let new_delivery = i == 0 || g.entries[i - 1].delivery != e.delivery;
        if new_delivery {
            deliveries += 1;
            match e.status {
                Some(Status::Firing) => firing += 1,
                Some(Status::Resolved) => resolved += 1,
                None => {}
            }
        }
        if let Some(r) = &e.notification_reason {
            if !reasons.contains(&r.as_str()) {
                reasons.push(r);
            }
        }
        if let Some(
            ActionTarget::Flag { flag, project, .. } | ActionTarget::Rollout { flag, project, .. },
        ) = &e.action
        {
            if !flags.contains(&(flag.as_str(), project.as_str())) {
                flags.push((flag, project));
            }
        }
        if bookkeeping(e) {
            let decided = g
                .entries
                .iter()
                .any(|o| o.delivery == e.delivery && !bookkeeping(o));
            if decided || !new_delivery {
                continue;
            }
            let (name, text) = match e.status {
                Some(Status::Resolved) => ("resolved", "resolved: nothing to undo"),
                _ => ("received", "received: no decision recorded"),
            };
            row(&mut rows, e, name, text, None, now_ms);
            state = name.into();
            continue;
        }
        let name = e.event.name();
        let mut text = sentence(e, first_acted_ms, now_ms);
        if e.dry_run && !text.starts_with("dry run") {
            text = ["dry run: ", &text].concat();
        }
        // The action's own result (e.g. the Unleash call) under the sentence.
        let detail = e
            .detail
            .as_deref()
            .filter(|d| !d.is_empty() && matches!(e.event, Event::Acted | Event::Reverted));
        row(&mut rows, e, &name, &text, detail, now_ms);
        // Telling people about a step is not a step: the state stays the step's.
        if !matches!(e.event, Event::Notified | Event::NotifyFailed) {
            state = name;
        }
    }

    // The card's colour: the most serious thing that happened to this occurrence (its
    // badge says where it is now).
    let card = ["bad", "ok", "warn", "other"]
        .into_iter()
        .find(|t| rows.0.contains(&["step tone-", t, "\""].concat()))
        .unwrap_or("quiet");
    let tone = tone(&state);
    let title = last.title.as_str();
    w.t("<section class=\"group tone-")
        .t(card)
        .t("\" data-occurrence=\"");
    w.e(g.occurrence)
        .t("\" data-state=\"")
        .e(&state)
        .t("\"><header><h2>");
    w.t("<span class=\"badge tone-")
        .t(tone)
        .t("\">")
        .words(&state);
    w.t("</span> ").e(title).t("</h2>");
    if let Some(s) = summary.filter(|s| *s != title) {
        w.t("<p class=\"summary\">").e(s).t("</p>");
    }
    let mut sep = "<p class=\"meta\">";
    if let Some(r) = rule {
        w.t(sep).t("rule ").filter_link("rule", r);
        sep = " · ";
    }
    for (flag, project) in &flags {
        w.t(sep).t("flag ").filter_link("flag", flag).t(" ");
        w.link(
            &unleash_flag_url(unleash_url, project, flag),
            "in Unleash",
            "unleash",
        );
        sep = " · ";
    }
    if let Some(l) = links {
        for (url, text, class) in [
            (&l.generator_url, "alert source", "generator"),
            (&l.panel_url, "Grafana panel", "panel"),
            (&l.dashboard_url, "Grafana dashboard", "dashboard"),
        ] {
            if let Some(u) = url {
                w.t(sep).link(u, text, class);
                sep = " · ";
            }
        }
    }
    if sep != "<p class=\"meta\">" {
        w.t("</p>");
    }
    w.t("<p class=\"fold\">").t(&deliveries.to_string());
    w.t(if deliveries == 1 {
        " delivery"
    } else {
        " deliveries"
    });
    if firing + resolved > 0 {
        w.t(" (").t(&firing.to_string()).t(" firing, ");
        w.t(&resolved.to_string()).t(" resolved)");
    }
    if !reasons.is_empty() {
        w.t("; sent because: ").e(&reasons.join(", "));
    }
    w.t("; first seen ")
        .e(&first.at.replace('T', " ").replace('Z', ""));
    w.t(" UTC (").t(&age(now_ms, first.at_ms)).t("), last ");
    w.e(last.at.get(11..19).unwrap_or(&last.at)).t(" UTC (");
    w.t(&age(now_ms, last.at_ms))
        .t(")</p><p class=\"occ\">occurrence ");
    w.e(g.occurrence)
        .t("</p></header><ol class=\"steps\">")
        .t(&rows.0);
    w.t("</ol></section>\n");
}

fn form(w: &mut W, q: &Query) {
    w.t("<form class=\"filters\" method=\"get\" action=\"/audit\">");
    let input = |w: &mut W, name: &str, label: &str, value: &Option<String>, hint: &str| {
        w.t("<label>")
            .t(label)
            .t(" <input name=\"")
            .t(name)
            .t("\" value=\"");
        w.e(value.as_deref().unwrap_or(""));
        w.t("\" placeholder=\"").t(hint).t("\"></label>");
    };
    input(w, "rule", "rule", &q.rule, "rule name");
    input(w, "flag", "flag", &q.flag, "flag name");
    w.t("<label>outcome <select name=\"outcome\"><option value=\"\">any</option>");
    let current = q.outcome.as_deref().unwrap_or("");
    let unknown = (!current.is_empty() && !OUTCOMES.contains(&current)).then_some(current);
    for n in OUTCOMES.iter().copied().chain(unknown) {
        w.t("<option value=\"").e(n).t("\"");
        if n == current {
            w.t(" selected");
        }
        w.t(">").words(n).t("</option>");
    }
    w.t("</select></label>");
    input(w, "since", "since (UTC)", &q.since, "2026-12-07T10:00");
    input(w, "until", "until (UTC)", &q.until, "2026-12-07T11:30");
    if let Some(l) = &q.limit {
        w.t("<input type=\"hidden\" name=\"limit\" value=\"")
            .e(l)
            .t("\">");
    }
    w.t("<button type=\"submit\">Filter</button> <a href=\"/audit\">clear</a></form>\n");
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;color:#1d2330;overflow-wrap:anywhere}\
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}\
h1{font-size:22px;margin:0 0 4px}\
.lead{color:#555;margin:0 0 14px}\
.filters{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:end;background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px 14px;margin-bottom:18px}\
.filters label{display:flex;flex-direction:column;font-size:12px;color:#555;gap:2px}\
.filters input,.filters select{font:inherit;padding:4px 6px;border:1px solid #c5cad3;border-radius:4px;min-width:0;width:13em;max-width:100%}\
.filters button{font:inherit;padding:5px 14px;border-radius:4px;border:1px solid #2f5fb3;background:#2f6fd6;color:#fff;cursor:pointer}\
.group{background:#fff;border:1px solid #dde1e8;border-left:6px solid #9aa3b2;border-radius:8px;padding:12px 16px;margin:0 0 14px}\
.group.tone-ok{border-left-color:#2e9b4f}.group.tone-bad{border-left-color:#d33b3b}.group.tone-warn{border-left-color:#d9902a}.group.tone-other{border-left-color:#6b5bd2}\
h2{font-size:16px;margin:0;display:flex;flex-wrap:wrap;gap:8px;align-items:center}\
.summary{margin:2px 0 0;font-weight:500}\
.meta,.fold,.occ{margin:4px 0 0;color:#4a5262;font-size:13px}\
.occ{color:#8a91a0;font-size:12px}\
a{color:#1f5fbf}a.filter{font-weight:600}\
.nolink{color:#8a91a0}\
.steps{list-style:none;margin:10px 0 0;padding:0;border-top:1px solid #eceef2}\
.step{display:grid;grid-template-columns:170px 130px minmax(0,1fr);gap:4px 12px;padding:6px 0;border-bottom:1px solid #f0f1f4;align-items:baseline}\
.step time{font-variant-numeric:tabular-nums;color:#333}\
.age{color:#8a91a0;font-size:12px}\
.sentence{margin:0}\
.detail{grid-column:3;margin:0;color:#6b7280;font-size:12px}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#e8eaef;color:#3b4252;justify-self:start}\
.badge.tone-ok{background:#dcf3e3;color:#1d6b35}.badge.tone-bad{background:#fbe0e0;color:#9c1f1f}\
.badge.tone-warn{background:#fdf0d9;color:#8a5300}.badge.tone-quiet{background:#eef0f3;color:#5b6372}\
.badge.tone-other{background:#e9e5fb;color:#45379e}\
.step.tone-quiet .sentence{color:#5b6372}\
.empty{background:#fff;border:1px dashed #c5cad3;border-radius:8px;padding:20px;color:#555}\
.more{color:#555}\
.error{background:#fbe0e0;color:#9c1f1f;border-radius:8px;padding:8px 14px}";

/// The whole page.
pub fn render(
    entries: &[Entry],
    now_ms: i64,
    q: &Query,
    limit: usize,
    unleash_url: &str,
) -> String {
    let gs = groups(entries);
    let mut w = W(String::with_capacity(4096 + entries.len() * 600));
    w.t("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    w.t("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    w.t("<title>remediator audit</title><style>").t(STYLE);
    w.t("</style></head><body><main><h1>remediator audit</h1><p class=\"lead\">");
    w.t(&gs.len().to_string()).t(if gs.len() == 1 {
        " occurrence, "
    } else {
        " occurrences, "
    });
    w.t(&entries.len().to_string())
        .t(" entries, newest first; times in UTC (now ");
    w.t(&audit::rfc3339(now_ms)).t(").</p>");
    if let Some(e) = &q.error {
        w.t("<p class=\"error\">").e(e).t("</p>");
    }
    form(&mut w, q);
    for g in &gs {
        render_group(&mut w, g, now_ms, unleash_url);
    }
    if gs.is_empty() && q.error.is_none() {
        w.t("<p class=\"empty\">No audit entries match.</p>");
    }
    if entries.len() >= limit {
        w.t("<p class=\"more\">Showing the newest ")
            .t(&limit.to_string());
        w.t(
            " entries; for older ones add <code>limit=</code> (up to 5000) or narrow the time.</p>",
        );
    }
    w.t("</main></body></html>\n");
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Links;

    const NOW: i64 = 1_764_165_726_305 + 10 * 60_000;
    const T0: i64 = 1_764_165_726_305;

    fn entry(delivery: i64, at_ms: i64, event: Event, occurrence: &str) -> Entry {
        Entry {
            delivery,
            at: audit::rfc3339(at_ms),
            at_ms,
            event,
            occurrence: occurrence.into(),
            title: "HighFailureRate".into(),
            rule: Some("Failure rate increase".into()),
            action: None,
            detail: None,
            dry_run: false,
            notification_reason: None,
            status: Some(Status::Firing),
            summary: None,
            links: Links::default(),
        }
    }

    fn flag(enabled: bool) -> Option<ActionTarget> {
        Some(ActionTarget::Flag {
            flag: "EnablePromotion".into(),
            project: "default".into(),
            environment: "production".into(),
            enabled,
        })
    }

    /// One occurrence: firing (acted), a repeat, resolved (reverted); newest first.
    fn story(occ: &str, t: i64, first_delivery: i64) -> Vec<Entry> {
        let d = first_delivery;
        let mut acted = entry(d, t + 2, Event::Acted, occ);
        acted.action = flag(false);
        acted.summary = Some("Failure rate increase on carts".into());
        acted.detail = Some("POST /api/.../off: 200".into());
        acted.links.generator_url = Some("http://prometheus:9090/graph?g0.expr=x".into());
        let mut repeat = entry(d + 1, t + 60_000, Event::AlreadyHandled, occ);
        repeat.detail = Some("already handled".into());
        let mut resolved_rx = entry(d + 2, t + 180_000, Event::Received, occ);
        resolved_rx.status = Some(Status::Resolved);
        let mut reverted = entry(d + 2, t + 180_001, Event::Reverted, occ);
        reverted.action = flag(true);
        reverted.status = Some(Status::Resolved);
        let mut v = vec![
            entry(d, t, Event::Received, occ),
            entry(d, t + 1, Event::Matched, occ),
            acted,
            entry(d + 1, t + 60_000, Event::Received, occ),
            entry(d + 1, t + 60_000, Event::Matched, occ),
            repeat,
            resolved_rx,
            reverted,
        ];
        v.reverse();
        v
    }

    fn page(entries: &[Entry], q: &Query) -> String {
        render(entries, NOW, q, 1000, "http://unleash.test:4242/")
    }

    #[test]
    fn a_notification_after_a_step_leaves_the_group_in_that_step() {
        let occ = "alertmanager/fpA/s";
        let mut entries = story(occ, T0, 1);
        // Newest first: the revert's notification came right after the revert.
        let mut told = entry(3, T0 + 180_002, Event::Notified, occ);
        told.detail = Some("notify slack on revert: sent POST <secret path> (200)".into());
        entries.insert(0, told);
        let html = page(&entries, &Query::default());
        assert!(html.contains("data-event=\"notified\""), "{html}");
        assert!(
            html.contains("told slack on revert: sent POST &lt;secret path&gt; (200)"),
            "{html}"
        );
        assert!(html.contains("data-state=\"reverted\""), "{html}");
    }

    #[test]
    fn ages_are_relative_to_now() {
        assert_eq!(age(NOW, NOW), "just now");
        assert_eq!(age(NOW, NOW + 5000), "just now");
        assert_eq!(age(NOW, NOW - 42_000), "42 s ago");
        assert_eq!(age(NOW, NOW - 3 * 60_000 - 5000), "3 min ago");
        assert_eq!(age(NOW, NOW - 2 * 3_600_000), "2 h ago");
        assert_eq!(age(NOW, NOW - 2 * 3_600_000 - 5 * 60_000), "2 h 5 min ago");
        assert_eq!(age(NOW, NOW - 4 * 86_400_000), "4 d ago");
    }

    #[test]
    fn an_occurrence_is_one_group_in_order_with_bookkeeping_folded() {
        let mut entries = story("alertmanager/fpA/s", T0, 1);
        // A newer occurrence of another alert: its group comes first.
        let mut other = entry(9, T0 + 300_000, Event::Skipped, "alertmanager/fpB/s");
        other.detail = Some("cooldown: rule \"x\" acted 1m0s ago; cooldown is 5m0s".into());
        entries.insert(0, other);
        let html = page(&entries, &Query::default());
        assert_eq!(html.matches("<section class=\"group").count(), 2, "{html}");
        let b = html.find("data-occurrence=\"alertmanager/fpB/s\"").unwrap();
        let a = html.find("data-occurrence=\"alertmanager/fpA/s\"").unwrap();
        assert!(b < a, "newest group first");
        // Bookkeeping is not a row of its own; decisions are, oldest first.
        assert!(!html.contains("data-event=\"received\""), "{html}");
        assert!(!html.contains("data-event=\"matched\""), "{html}");
        let group_a = &html[a..];
        let order: Vec<usize> = ["acted", "already_handled", "reverted"]
            .iter()
            .map(|e| group_a.find(&format!("data-event=\"{e}\"")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!(
            group_a.contains("3 deliveries (2 firing, 1 resolved)"),
            "{group_a}"
        );
        assert!(group_a.contains("data-state=\"reverted\""));
    }

    #[test]
    fn decisions_read_as_sentences_with_their_reasons() {
        let mut entries = story("am/fp/s", T0, 1);
        let mut circuit = entry(7, T0 + 400_000, Event::CircuitOpen, "am/fp2/s");
        circuit.detail = Some("CIRCUIT OPEN: rule \"r\" already acted 3 times".into());
        let mut skipped = entry(8, T0 + 500_000, Event::Skipped, "am/fp3/s");
        skipped.detail = Some("cooldown: rule \"r\" acted 1m0s ago".into());
        entries.splice(0..0, [skipped, circuit]);
        let html = page(&entries, &Query::default());
        for s in [
            "turned EnablePromotion off in production: Failure rate increase on carts",
            "already handled (first acted 9 min ago)",
            "reverted: EnablePromotion back on",
            "circuit open: rule &quot;r&quot; already acted 3 times",
            "skipped: cooldown: rule &quot;r&quot; acted 1m0s ago",
        ] {
            assert!(html.contains(s), "missing {s:?} in {html}");
        }
        // The action's own result under the sentence; times in UTC with ages.
        assert!(html.contains("<p class=\"detail\">POST /api/.../off: 200</p>"));
        assert!(
            html.contains("14:02:06 <span class=\"age\">9 min ago</span>"),
            "{html}"
        );
    }

    #[test]
    fn a_resolve_with_nothing_to_undo_still_shows() {
        let occ = "am/fp/s";
        let mut acted = entry(1, T0, Event::Acted, occ);
        acted.action = flag(false);
        let mut rx = entry(2, T0 + 60_000, Event::Received, occ);
        rx.status = Some(Status::Resolved);
        let html = page(&[rx, acted], &Query::default());
        assert!(html.contains("data-event=\"resolved\""), "{html}");
        assert!(html.contains("resolved: nothing to undo"));
        assert!(html.contains("data-state=\"resolved\""));
    }

    #[test]
    fn unknown_events_render_generically() {
        // A newer version's event this build's page has no sentence for: any variant
        // without one falls to the generic arm.
        let mut e = entry(1, T0, Event::RevertSkipped, "am/fp/s");
        e.action = None;
        e.detail = Some("kept".into());
        assert_eq!(sentence(&e, None, NOW), "revert skipped: kept");
        assert_eq!(tone("quarantined"), "other");
        assert_eq!(tone("budget_exhausted"), "warn");
        let mut u = entry(1, T0, Event::Unknown, "am/fp/s");
        u.detail = Some("max_changes reached".into());
        u.action = flag(false);
        assert_eq!(
            sentence(&u, None, NOW),
            "unknown (EnablePromotion off in production): max_changes reached"
        );
        assert_eq!(tone(&u.event.name()), "other");
        let html = page(&[e], &Query::default());
        assert!(html.contains("data-event=\"revert_skipped\""));
    }

    #[test]
    fn links_go_to_unleash_and_the_alert_source_and_only_over_http() {
        let html = page(&story("am/fp/s", T0, 1), &Query::default());
        assert!(html.contains(
            "href=\"http://unleash.test:4242/projects/default/features/EnablePromotion\""
        ));
        assert!(html.contains("href=\"http://prometheus:9090/graph?g0.expr=x\""));
        assert!(html.contains("href=\"/audit?flag=EnablePromotion\""));
        assert!(html.contains("href=\"/audit?rule=Failure%20rate%20increase\""));

        let mut e = entry(1, T0, Event::Skipped, "am/fp/s");
        e.links.generator_url = Some("javascript:alert(1)".into());
        e.links.panel_url = Some(" JavaScript:alert(2)".into());
        e.links.dashboard_url = Some("HTTPS://grafana.example/d/x?a=1&b=\"2\"".into());
        let html = page(&[e], &Query::default());
        assert!(!html.contains("href=\"javascript"), "{html}");
        assert!(!html.contains("href=\" JavaScript"), "{html}");
        assert!(html.contains("alert source: javascript:alert(1)"));
        assert!(html.contains("href=\"HTTPS://grafana.example/d/x?a=1&amp;b=&quot;2&quot;\""));
        // A hostile Unleash base URL is not made a link either.
        let html = render(
            &story("am/fp/s", T0, 1),
            NOW,
            &Query::default(),
            1000,
            "javascript:x",
        );
        assert!(!html.contains("href=\"javascript"), "{html}");
    }

    #[test]
    fn everything_shown_is_escaped() {
        let hostile = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>";
        let mut e = entry(1, T0, Event::Acted, hostile);
        e.title = hostile.into();
        e.summary = Some(hostile.into());
        e.rule = Some(hostile.into());
        e.detail = Some(hostile.into());
        e.notification_reason = Some(hostile.into());
        e.action = Some(ActionTarget::Flag {
            flag: hostile.into(),
            project: hostile.into(),
            environment: hostile.into(),
            enabled: false,
        });
        let mut f = e.clone();
        f.event = Event::Error;
        f.at = hostile.into();
        let q = Query {
            rule: Some(hostile.into()),
            flag: Some(hostile.into()),
            outcome: Some(hostile.into()),
            since: Some(hostile.into()),
            until: Some(hostile.into()),
            limit: Some(hostile.into()),
            error: Some(hostile.into()),
        };
        let html = page(&[f, e], &q);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("'x'"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;"));
        // In URLs, percent-encoded.
        assert!(
            html.contains("/features/%3Cscript%3Ealert%28%27x%27%29"),
            "{html}"
        );
    }

    #[test]
    fn filters_are_kept_in_the_form() {
        let q = Query {
            rule: Some("Failure rate increase".into()),
            flag: Some("EnablePromotion".into()),
            outcome: Some("acted".into()),
            since: Some("2025-11-26T14:00:00Z".into()),
            until: None,
            limit: Some("50".into()),
            error: None,
        };
        let html = page(&[], &q);
        assert!(html.contains("<form class=\"filters\" method=\"get\" action=\"/audit\">"));
        assert!(html.contains("name=\"rule\" value=\"Failure rate increase\""));
        assert!(html.contains("name=\"flag\" value=\"EnablePromotion\""));
        assert!(html.contains("<option value=\"acted\" selected>"));
        assert!(html.contains("name=\"since\" value=\"2025-11-26T14:00:00Z\""));
        assert!(html.contains("name=\"until\" value=\"\""));
        assert!(html.contains("name=\"limit\" value=\"50\""));
        assert!(html.contains("No audit entries match."));
        // A value the list does not know (a newer outcome) stays selected.
        let q = Query {
            outcome: Some("budget_exhausted".into()),
            ..Query::default()
        };
        assert!(page(&[], &q).contains("<option value=\"budget_exhausted\" selected>"));
    }
}
