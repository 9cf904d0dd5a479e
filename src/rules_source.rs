//! Where the effective rules come from: fetched over HTTP (cached in key-value
//! with a TTL and revalidated with ETag / Last-Modified), else the last set that
//! was fetched and valid, else the bundled file. Invalid rules are never used.
//!
//! A fetch is bounded in size ([`MAX_RULES_BYTES`]) and time ([`MAX_FETCH_TIME`]),
//! and only one delivery at a time fetches (a lease in key-value): a slow or huge
//! rules server costs one bounded request per TTL, not every webhook.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::rfc3339;
use crate::config::Config;
use crate::platform::{FileStamp, Platform, SendError};
use crate::problem::Problem;
use crate::rules::compiled::{self, Corrupt, View, ENCODING_VERSION, NEED_RECORDS};
use crate::rules::{self, Rule, RuleSet, RulesFormat};
use crate::state;

const STATE_KEY: &str = "rules/source";
/// Set (to the start time, Unix ms) while one delivery fetches the rules URL.
const FETCHING_KEY: &str = "rules/fetching";

/// Largest rules file fetched; a larger response is a fetch error.
pub const MAX_RULES_BYTES: usize = 1024 * 1024;
/// The longest a rules fetch may take, whatever `outbound_timeout_ms` says: every
/// webhook that finds the cache stale waits for it.
pub const MAX_FETCH_TIME: Duration = Duration::from_secs(5);

fn fetch_timeout(cfg: &Config) -> Duration {
    cfg.outbound_timeout.min(MAX_FETCH_TIME)
}

/// How long a fetching marker holds off other fetches: twice the fetch deadline, by
/// which time the fetch has ended one way or another (a marker left by a delivery
/// that died mid-fetch blocks nothing for longer).
fn fetch_lease_ms(cfg: &Config) -> i64 {
    2 * fetch_timeout(cfg).as_millis() as i64
}

/// `url` as it may be shown (reports, warnings, `/healthz`, `/rules`): without
/// userinfo, query or fragment, which is where URLs carry tokens.
pub fn display_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

/// `text` (built from a fetch of `url`, possibly quoting a peer) without the URL's
/// userinfo, query or fragment, whole or in parts.
fn scrub(text: &str, url: &str) -> String {
    let mut t = text.replace(url, &display_url(url));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@').map(|(userinfo, _)| userinfo);
    let after_path = rest.find(['?', '#']).map(|i| &rest[i..]);
    let mut secrets: Vec<&str> = Vec::new();
    if let Some(tail) = after_path {
        secrets.push(tail);
        secrets.push(&tail[1..]);
        secrets.extend(tail[1..].split(['&', '#', ';']).flat_map(|kv| {
            let value = kv.split_once('=').map_or(kv, |(_, v)| v);
            [kv, value]
        }));
    }
    if let Some(userinfo) = userinfo {
        secrets.push(userinfo);
        secrets.extend(userinfo.split(':'));
    }
    // Longest first, so a whole query goes before its parts; parts shorter than 4
    // characters are left alone (they would garble the text and protect nothing).
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        t = t.replace(secret, "<redacted>");
    }
    t
}

/// Whether this delivery should fetch: no other delivery's marker is fresh, and
/// ours went in first. A key-value failure fetches anyway (the marker only saves
/// requests; without key-value nothing is cached either).
fn claim_fetch(p: &dyn Platform, cfg: &Config, now: i64) -> bool {
    let current = match p.kv_get(FETCHING_KEY) {
        Ok(current) => current,
        Err(e) => {
            p.log(&format!(
                "remediator: WARNING rules fetch marker unreadable: {e}"
            ));
            return true;
        }
    };
    let started = current
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<i64>().ok());
    if started.is_some_and(|t| (now - t).abs() < fetch_lease_ms(cfg)) {
        return false;
    }
    match p.kv_compare_and_swap(FETCHING_KEY, current.as_deref(), now.to_string().as_bytes()) {
        Ok(won) => won,
        Err(e) => {
            p.log(&format!(
                "remediator: WARNING rules fetch marker not set: {e}"
            ));
            true
        }
    }
}

/// The effective rules and where they came from.
#[derive(Debug)]
pub struct Effective {
    pub rules: Rules,
    /// e.g. `url http://…/remediation.yaml`, `last-known-good from …`, `bundled /remediation.yaml`.
    pub source: String,
    /// ETag when the server gave one, else the content hash (`h128:…`).
    pub version: String,
    pub fetched_at: Option<String>,
    /// Why the preferred source was not used (fetch or validation error).
    pub warning: Option<String>,
    /// What `remediator_rules_source` says: `bundled`, `url`, `last_known_good`, or
    /// `degraded` (a rules URL is set but nothing good was ever fetched from it).
    pub state: &'static str,
    /// When the rules URL last answered with valid rules (200 or 304), Unix ms.
    pub last_success_ms: Option<i64>,
}

/// A fetched rules file that parsed and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cached {
    pub url: String,
    /// The text, in records written before it moved to `rules/text/<H>` (read, and
    /// moved at the next fetch); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// The text's [`compiled::hash128`] in hex: it is stored at `rules/text/<H>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_hash: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub last_good: Option<Cached>,
    /// Last time the URL was asked (whatever the answer): one request per TTL.
    pub checked_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Last time the URL answered with valid rules (200 or 304).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_at_ms: Option<i64>,
}

/// Largest cache entry written (Spin's key-value takes values up to 1 MB); a file
/// whose entry is larger is parsed on every request.
pub const MAX_ENTRY_BYTES: usize = 1_000_000;
/// Cache entries of another rules text are removed this long after they were written.
const ENTRY_MAX_AGE_MS: i64 = 7 * 86_400_000;
const COMPILED_PREFIX: &str = "rules/compiled/";
const TEXT_PREFIX: &str = "rules/text/";
const STAMP_PREFIX: &str = "rules/stamp/";
const RECORDS_PREFIX: &str = "rules/records/";
/// An entry whose records part is larger than this is stored as two values, the
/// index and the records: a request reads the records only when a rule is decoded
/// (a no-match request with 1,000 rules then copies ~28 KB, not ~96 KB). Smaller
/// ones stay one value (one read, one write).
const SPLIT_ABOVE: usize = 8 * 1024;
/// A bundled file's stamp stands in for its content only once both of its times are
/// this far in the past: a write in the same clock tick as the one the stamp shows
/// would keep the stamp (git's "racily clean" files). A later write is stamped later.
pub const SETTLED_MS: i64 = 2_000;
/// How long a stamp record stands in before the file is read and hashed again (and
/// the record rewritten): bounds the one edit a stamp does not see (in place, same
/// size, mtime set back; docs/rules-cache.md) to this long, for one read and one
/// 28-byte write per stamp per period.
pub const STAMP_TRUST_MS: i64 = 5 * 60_000;

/// `rules/compiled/<V>/<H>`: the encoded rules of the text hashed H, never overwritten.
pub fn entry_key(hash: &[u8; 16]) -> String {
    format!(
        "{COMPILED_PREFIX}{ENCODING_VERSION}/{}",
        compiled::hex(hash)
    )
}

/// `rules/stamp/<S>`: which text (its hash) the bundled file `path` held when the host
/// stamped it `stamp` (docs/rules-cache.md, "Bundled rules: the file's stamp"); `None` while
/// the stamp may not stand in for the content: the host gives no times, or the file
/// changed less than [`SETTLED_MS`] before `now_ms`, or its times are in the future.
pub fn stamp_key(path: &str, stamp: &FileStamp, now_ms: i64) -> Option<String> {
    let (modified, changed) = (stamp.modified_ns?, stamp.changed_ns?);
    let settled = (i128::from(now_ms) - i128::from(SETTLED_MS)) * 1_000_000;
    if modified > settled || changed > settled {
        return None;
    }
    let mut b = path.as_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(&stamp.identity[0].to_le_bytes());
    b.extend_from_slice(&stamp.identity[1].to_le_bytes());
    b.extend_from_slice(&stamp.size.to_le_bytes());
    b.extend_from_slice(&modified.to_le_bytes());
    b.extend_from_slice(&changed.to_le_bytes());
    Some(format!(
        "{STAMP_PREFIX}{}",
        compiled::hex(&compiled::hash128(&b))
    ))
}

/// A stamp record: write time (8 bytes), the text's hash (16), a checksum of both (4).
fn stamp_record(hash: &[u8; 16], now_ms: i64) -> Vec<u8> {
    let mut v = now_ms.to_le_bytes().to_vec();
    v.extend_from_slice(hash);
    let sum = compiled::hash128(&v);
    v.extend_from_slice(&sum[..4]);
    v
}

/// The hash a stamp record names, if it is whole and younger than [`STAMP_TRUST_MS`].
fn stamped_hash(v: &[u8], now_ms: i64) -> Option<[u8; 16]> {
    if v.len() != 28 || compiled::hash128(&v[..24])[..4] != v[24..] {
        return None;
    }
    // Stamps are of one node's files, written on its clock: a record from the future
    // is damaged (or the clock jumped), and expires as an old one does.
    if now_ms.saturating_sub(written_at(v, 0)).abs() >= STAMP_TRUST_MS {
        return None;
    }
    v[8..24].try_into().ok()
}

/// `rules/records/<V>/<H>`: the records part of the entry `rules/compiled/<V>/<H>`,
/// when it is stored apart.
pub fn records_key(hash: &[u8; 16]) -> String {
    format!("{RECORDS_PREFIX}{ENCODING_VERSION}/{}", compiled::hex(hash))
}

/// `rules/text/<H>`: a fetched rules text (8 bytes of write time, then the text).
pub fn text_key(hash: &[u8; 16]) -> String {
    format!("{TEXT_PREFIX}{}", compiled::hex(hash))
}

fn content_version(hash: &[u8; 16]) -> String {
    format!("h128:{}", compiled::hex(hash))
}

fn parse_hex(h: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if h.len() != 32 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Where the text of the rules is, when it is needed (a cache miss, a corrupt entry,
/// `GET /rules`): in hand (bundled; old URL records), or in `rules/text/<H>`.
#[derive(Debug)]
enum Text {
    Inline(String),
    Stored,
    /// The bundled file, found by its stamp and not read.
    File(String),
}

/// The effective rules: parsed, or a cache entry read in place (the rules that can
/// match a problem decoded when it is matched). A damaged entry is noticed when read,
/// logged, and replaced by a parse of the text; a valid file never fails for it.
#[derive(Debug)]
pub struct Rules {
    hash: [u8; 16],
    text: Text,
    entry: Entry,
    /// The parse of the text, once a corrupt entry forced one.
    parsed: OnceCell<RuleSet>,
}

#[derive(Debug)]
enum Entry {
    Parsed(Box<RuleSet>),
    Cached(View),
}

impl Rules {
    fn set(&self) -> Option<&RuleSet> {
        match &self.entry {
            Entry::Parsed(set) => Some(set),
            Entry::Cached(_) => self.parsed.get(),
        }
    }

    pub fn format(&self) -> RulesFormat {
        match &self.entry {
            Entry::Parsed(set) => set.format,
            Entry::Cached(v) => v.format(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.entry {
            Entry::Parsed(set) => set.rules.len(),
            Entry::Cached(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's `defaults.max_changes`.
    pub fn max_changes(&self) -> Option<(u32, Duration)> {
        match &self.entry {
            Entry::Parsed(set) => set.max_changes,
            Entry::Cached(v) => v.max_changes(),
        }
    }

    /// The rule for `problem`, as `RuleSet::find` on the parsed file gives it. Errs
    /// only when the entry is damaged and the text cannot be read (a retry may help).
    pub fn find(
        &self,
        p: &dyn Platform,
        problem: &Problem,
    ) -> Result<Option<Cow<'_, Rule>>, String> {
        if let Some(set) = self.set() {
            return Ok(set.find(problem).map(Cow::Borrowed));
        }
        let Entry::Cached(view) = &self.entry else {
            return Ok(None);
        };
        match self.with_records(p, view, |v| v.find(problem)) {
            Ok(found) => Ok(found.map(|(_, rule)| Cow::Owned(rule))),
            Err(corrupt) => Ok(self.recover(p, corrupt)?.find(problem).map(Cow::Borrowed)),
        }
    }

    /// Every rule (for `GET /rules`).
    pub fn all(&self, p: &dyn Platform) -> Result<Cow<'_, RuleSet>, String> {
        if let Some(set) = self.set() {
            return Ok(Cow::Borrowed(set));
        }
        let Entry::Cached(view) = &self.entry else {
            return Err("no rules".into());
        };
        match self.with_records(p, view, View::decode_all) {
            Ok(set) => Ok(Cow::Owned(set)),
            Err(corrupt) => self.recover(p, corrupt).map(Cow::Borrowed),
        }
    }

    /// `read(view)`, reading the entry's records part first if it turns out needed.
    fn with_records<T>(
        &self,
        p: &dyn Platform,
        view: &View,
        read: impl Fn(&View) -> Result<T, Corrupt>,
    ) -> Result<T, Corrupt> {
        match read(view) {
            Err(e) if e == NEED_RECORDS => {
                let records = p
                    .kv_get(&records_key(&self.hash))
                    .map_err(|_| Corrupt("records part unreadable"))?
                    .ok_or(Corrupt("records part missing"))?;
                view.supply_records(records)?;
                read(view)
            }
            other => other,
        }
    }

    /// The rules file's text (for `GET /rules`).
    pub fn text(&self, p: &dyn Platform) -> Result<String, String> {
        load_text(p, &self.text, &self.hash).map(Cow::into_owned)
    }

    /// A damaged entry: say so, parse the text instead and rewrite the entry.
    fn recover(&self, p: &dyn Platform, corrupt: Corrupt) -> Result<&RuleSet, String> {
        if let Some(set) = self.parsed.get() {
            return Ok(set);
        }
        p.log(&format!(
            "remediator: WARNING {corrupt}; the rules are parsed instead and the entry rewritten"
        ));
        let text = load_text(p, &self.text, &self.hash)?;
        let set = rules::parse(&text).map_err(|e| e.to_string())?;
        store(p, &self.hash, &set);
        Ok(self.parsed.get_or_init(|| set))
    }
}

/// The text of the rules hashed `hash`; a stored text must still hash to it.
fn load_text<'a>(
    p: &dyn Platform,
    text: &'a Text,
    hash: &[u8; 16],
) -> Result<Cow<'a, str>, String> {
    match text {
        Text::Inline(t) => Ok(Cow::Borrowed(t)),
        Text::File(path) => {
            let t = p
                .read_file(path)
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            if compiled::hash128(t.as_bytes()) != *hash {
                return Err(format!("{path} changed during the request"));
            }
            Ok(Cow::Owned(t))
        }
        Text::Stored => {
            let key = text_key(hash);
            let raw = p
                .kv_get(&key)
                .map_err(|e| format!("the rules text {key} is unreadable: {e}"))?
                .ok_or_else(|| format!("the rules text {key} is missing"))?;
            let t = raw
                .get(8..)
                .and_then(|t| std::str::from_utf8(t).ok())
                .filter(|t| compiled::hash128(t.as_bytes()) == *hash)
                .ok_or_else(|| format!("the rules text {key} is damaged"))?;
            Ok(Cow::Owned(t.to_string()))
        }
    }
}

/// Write the entry of `set` unless it is too large: one value, or the index and the
/// records apart ([`SPLIT_ABOVE`]), records first (an index found without them costs
/// a parse and a rewrite, not a wrong answer). Losing it costs a parse later.
fn store(p: &dyn Platform, hash: &[u8; 16], set: &RuleSet) {
    let bytes = compiled::encode(set, hash, p.now_ms());
    if bytes.len() > MAX_ENTRY_BYTES {
        return;
    }
    let split = compiled::index_len(&bytes).unwrap_or(bytes.len());
    let written = if bytes.len() - split <= SPLIT_ABOVE {
        p.kv_set(&entry_key(hash), &bytes)
    } else {
        p.kv_set_many(&[
            (records_key(hash), bytes[split..].to_vec()),
            (entry_key(hash), bytes[..split].to_vec()),
        ])
    };
    if let Err(e) = written {
        p.log(&format!(
            "remediator: WARNING rules cache entry not written: {e}"
        ));
    }
}

/// The rules of the text hashed `hash`: its cache entry when there is a good one,
/// else a parse of the text (whose entry is then written). Only a valid text is
/// cached, so its errors are the parser's.
fn cached_or_parsed(p: &dyn Platform, hash: [u8; 16], text: Text) -> Result<Rules, String> {
    let write = match p.kv_get(&entry_key(&hash)) {
        Ok(Some(bytes)) => match View::open(bytes, &hash) {
            Ok(view) => {
                return Ok(Rules {
                    hash,
                    text,
                    entry: Entry::Cached(view),
                    parsed: OnceCell::new(),
                })
            }
            Err(corrupt) => {
                p.log(&format!(
                    "remediator: WARNING {corrupt}; the rules are parsed instead and the entry rewritten"
                ));
                true
            }
        },
        Ok(None) => true,
        // Not written either: a store that fails reads would thrash on writes.
        Err(e) => {
            p.log(&format!(
                "remediator: WARNING rules cache unreadable, the rules are parsed: {e}"
            ));
            false
        }
    };
    let set = rules::parse(&load_text(p, &text, &hash)?).map_err(|e| e.to_string())?;
    if write {
        store(p, &hash, &set);
    }
    Ok(Rules {
        hash,
        text,
        entry: Entry::Parsed(Box::new(set)),
        parsed: OnceCell::new(),
    })
}

/// Whether `key` is one of the rules cache's records (the sweep judges them with
/// [`stale_cache_record`]).
pub fn is_cache_record(key: &str) -> bool {
    [COMPILED_PREFIX, RECORDS_PREFIX, TEXT_PREFIX, STAMP_PREFIX]
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// Whether the sweep should remove `key`, a rules cache entry (index or records
/// part), stored text or stamp record: one of another encoding version; records
/// whose index is gone; a stamp record written more than 7 days ago; or one of a text
/// other than the current rules URL's written more than 7 days ago (the bundled
/// file's entry and stamp, if removed, are written again by the next request).
pub fn stale_cache_record(
    p: &dyn Platform,
    key: &str,
    now_ms: i64,
) -> Result<bool, crate::platform::KvError> {
    if key.starts_with(STAMP_PREFIX) {
        // Rewritten by the next request that needs it.
        let Some(raw) = p.kv_get(key)? else {
            return Ok(false);
        };
        return Ok(written_at(&raw, 0).saturating_add(ENTRY_MAX_AGE_MS) < now_ms);
    }
    // A records part goes with its index (`rules/compiled/<V>/<H>`).
    let (hash, records_of) = if let Some(rest) = key.strip_prefix(RECORDS_PREFIX) {
        match rest.split_once('/') {
            Some((v, h)) if v == ENCODING_VERSION.to_string() => {
                (h, Some(format!("{COMPILED_PREFIX}{v}/{h}")))
            }
            _ => return Ok(true),
        }
    } else if let Some(rest) = key.strip_prefix(COMPILED_PREFIX) {
        match rest.split_once('/') {
            Some((v, h)) if v == ENCODING_VERSION.to_string() => (h, None),
            _ => return Ok(true),
        }
    } else if let Some(h) = key.strip_prefix(TEXT_PREFIX) {
        (h, None)
    } else {
        return Ok(false);
    };
    let current = state::read::<SourceState>(p, STATE_KEY)
        .ok()
        .and_then(|v| v.value)
        .and_then(|st| st.last_good)
        .and_then(|c| c.text_hash);
    if current.as_deref() == Some(hash) {
        return Ok(false);
    }
    // Both start with their write time: the entry (index) at byte 24, the text at 0.
    let (read, at) = match &records_of {
        Some(index) => (index.as_str(), 24),
        None if key.starts_with(COMPILED_PREFIX) => (key, 24),
        None => (key, 0),
    };
    let Some(raw) = p.kv_get(read)? else {
        // Records whose index is gone are never read.
        return Ok(records_of.is_some());
    };
    Ok(written_at(&raw, at).saturating_add(ENTRY_MAX_AGE_MS) < now_ms)
}

fn written_at(raw: &[u8], at: usize) -> i64 {
    raw.get(at..at + 8).map_or(0, |b| {
        i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    })
}

/// What the stamp record of a bundled file says.
enum Stamped {
    /// The entry of the text it names, opened; the file is not read.
    Hit(Box<Rules>),
    /// No record, or a damaged or expired one (`None`), or the text it names has no
    /// good entry: read the file.
    Miss(Option<[u8; 16]>),
    /// Unreadable: read the file, and write nothing (a store that fails reads would
    /// take a write per request).
    Unreadable,
}

fn by_stamp(p: &dyn Platform, key: &str, path: &str) -> Stamped {
    let hash = match p.kv_get(key) {
        Ok(v) => match v.as_deref().and_then(|v| stamped_hash(v, p.now_ms())) {
            Some(hash) => hash,
            None => return Stamped::Miss(None),
        },
        Err(_) => return Stamped::Unreadable,
    };
    // A missing or damaged entry: the full path below reads, logs and rewrites it.
    match p.kv_get(&entry_key(&hash)) {
        Ok(Some(bytes)) => match View::open(bytes, &hash) {
            Ok(view) => Stamped::Hit(Box::new(Rules {
                hash,
                text: Text::File(path.to_string()),
                entry: Entry::Cached(view),
                parsed: OnceCell::new(),
            })),
            Err(_) => Stamped::Miss(Some(hash)),
        },
        _ => Stamped::Miss(Some(hash)),
    }
}

/// The bundled file's rules. When the host stamps the file (docs/rules-cache.md), a
/// settled stamp seen before names the text's hash and the file is not read; else
/// the file is read and hashed, and its settled stamp recorded (one small write per
/// new stamp: an edit, a restart that copies the files anew).
fn bundled(p: &dyn Platform, cfg: &Config, warning: Option<String>) -> Result<Effective, String> {
    let path = &cfg.rules_file;
    let stamp = p
        .file_stamp(path)
        .and_then(|s| stamp_key(path, &s, p.now_ms()));
    let stamped = match &stamp {
        Some(key) => by_stamp(p, key, path),
        None => Stamped::Unreadable,
    };
    let (hash, rules) = match stamped {
        Stamped::Hit(rules) => (rules.hash, *rules),
        miss => {
            let text = p
                .read_file(path)
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            let hash = compiled::hash128(text.as_bytes());
            let rules = cached_or_parsed(p, hash, Text::Inline(text))
                .map_err(|e| format!("{path}: {e}"))?;
            if let (Some(key), Stamped::Miss(named)) = (&stamp, miss) {
                if named != Some(hash) {
                    // Losing it costs a read and a hash per request until written.
                    if let Err(e) = p.kv_set(key, &stamp_record(&hash, p.now_ms())) {
                        p.log(&format!(
                            "remediator: WARNING rules file stamp not recorded: {e}"
                        ));
                    }
                }
            }
            (hash, rules)
        }
    };
    Ok(Effective {
        rules,
        version: content_version(&hash),
        source: format!("bundled {}", cfg.rules_file),
        fetched_at: None,
        state: if warning.is_some() {
            "degraded"
        } else {
            "bundled"
        },
        warning,
        last_success_ms: None,
    })
}

fn from_cache(
    p: &dyn Platform,
    c: &Cached,
    source: String,
    warning: Option<String>,
) -> Result<Effective, String> {
    // Records from before the text moved out carry it (and no hash).
    let (hash, text) = match c.text_hash.as_deref().and_then(parse_hex) {
        Some(hash) if c.text.is_empty() => (hash, Text::Stored),
        _ => (
            compiled::hash128(c.text.as_bytes()),
            Text::Inline(c.text.clone()),
        ),
    };
    let rules = cached_or_parsed(p, hash, text)
        .map_err(|e| scrub(&format!("cached rules from {}: {e}", c.url), &c.url))?;
    Ok(Effective {
        state: if warning.is_some() {
            "last_known_good"
        } else {
            "url"
        },
        last_success_ms: None,
        rules,
        version: c.etag.clone().unwrap_or_else(|| content_version(&hash)),
        source,
        fetched_at: Some(rfc3339(c.fetched_at_ms)),
        warning,
    })
}

/// Move a fetched text out of the `rules/source` record into `rules/text/<H>` (if
/// it is not there yet), and write its cache entry when its parse is at hand. On a
/// failed write the text stays in the record: slower, still correct.
fn move_text(p: &dyn Platform, c: &mut Cached, previous: Option<&str>, set: Option<&RuleSet>) {
    if c.text.is_empty() {
        return;
    }
    let hash = compiled::hash128(c.text.as_bytes());
    let hex = compiled::hex(&hash);
    if previous != Some(hex.as_str()) {
        let mut value = p.now_ms().to_le_bytes().to_vec();
        value.extend_from_slice(c.text.as_bytes());
        if let Err(e) = p.kv_set(&text_key(&hash), &value) {
            p.log(&format!("remediator: WARNING rules text not stored: {e}"));
            return;
        }
        if let Some(set) = set {
            store(p, &hash, set);
        }
    }
    c.text = String::new();
    c.text_hash = Some(hex);
}

/// The rules to use now. Errors only when no usable source exists at all.
pub fn effective(p: &dyn Platform, cfg: &Config) -> Result<Effective, String> {
    let Some(url) = cfg.rules_url() else {
        return bundled(p, cfg, None);
    };
    let now = p.now_ms();
    let stored = state::read::<SourceState>(p, STATE_KEY).map_err(|e| e.to_string());
    let mut st = stored
        .as_ref()
        .ok()
        .and_then(|v| v.value.clone())
        .unwrap_or_default();
    // What was fetched from another URL (rules_origin/rules_path changed) is neither
    // fresh nor last-known-good for this one.
    if st.last_good.as_ref().is_some_and(|c| c.url != url) {
        st = SourceState::default();
    }
    let fresh = st
        .checked_at_ms
        .is_some_and(|t| now - t < cfg.rules_ttl.as_millis() as i64);
    let shown = display_url(&url);
    let mut busy = None;
    if !fresh && !claim_fetch(p, cfg, now) {
        busy = Some(format!(
            "rules URL {shown} is being fetched by another request"
        ));
    } else if !fresh {
        st.checked_at_ms = Some(now);
        match fetch(p, cfg, &url, st.last_good.as_ref()) {
            Ok(Fetched::NotModified) => {
                st.last_error = None;
                st.ok_at_ms = Some(now);
                // A record from before the text moved out: move it now.
                if let Some(c) = st.last_good.as_mut() {
                    move_text(p, c, None, None);
                }
            }
            Ok(Fetched::New(mut c, set)) => {
                let previous = st.last_good.as_ref().and_then(|c| c.text_hash.clone());
                move_text(p, &mut c, previous.as_deref(), Some(&set));
                st.last_good = Some(c);
                st.last_error = None;
                st.ok_at_ms = Some(now);
            }
            Err(e) => st.last_error = Some(scrub(&cfg.redact(&e), &url)),
        }
        // Losing this write only costs an extra conditional request later.
        if let Err(e) = state::write(p, STATE_KEY, &st) {
            p.log(&format!("remediator: WARNING rules cache not written: {e}"));
        }
        if let Err(e) = p.kv_delete(FETCHING_KEY) {
            p.log(&format!(
                "remediator: WARNING rules fetch marker not removed (it expires): {e}"
            ));
        }
    }
    let warning = st.last_error.as_deref().map(|w| scrub(w, &url));
    // Records written before `ok_at_ms` existed: the last new fetch is a lower bound.
    let last_success_ms = st
        .ok_at_ms
        .or(st.last_good.as_ref().map(|c| c.fetched_at_ms));
    let effective = match &st.last_good {
        Some(c) if warning.is_none() => from_cache(p, c, format!("url {shown}"), None),
        Some(c) => from_cache(
            p,
            c,
            format!("last-known-good from {shown}"),
            warning.map(|w| {
                format!(
                    "{w}; using the last good rules fetched at {}",
                    rfc3339(c.fetched_at_ms)
                )
            }),
        ),
        None => bundled(
            p,
            cfg,
            Some(format!(
                "{}; no good rules were ever fetched, using the bundled file",
                warning
                    .or(busy)
                    .unwrap_or_else(|| "rules URL not fetched".into())
            )),
        ),
    };
    effective.map(|e| Effective {
        last_success_ms,
        ..e
    })
}

enum Fetched {
    NotModified,
    /// The new text and its parse.
    New(Cached, Box<RuleSet>),
}

fn fetch(
    p: &dyn Platform,
    cfg: &Config,
    url: &str,
    cached: Option<&Cached>,
) -> Result<Fetched, String> {
    let mut req = http::Request::get(url).header(
        http::header::ACCEPT,
        "application/yaml, text/yaml, text/plain, */*",
    );
    if !cfg.rules_token.is_empty() {
        req = req.header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", cfg.rules_token.expose()),
        );
    }
    if let Some(c) = cached.filter(|c| c.url == url) {
        if let Some(etag) = &c.etag {
            req = req.header(http::header::IF_NONE_MATCH, etag.as_str());
        } else if let Some(lm) = &c.last_modified {
            req = req.header(http::header::IF_MODIFIED_SINCE, lm.as_str());
        }
    }
    let shown = display_url(url);
    let req = req
        .body(Vec::new())
        .map_err(|e| format!("rules URL {shown}: {e}"))?;
    let timeout = fetch_timeout(cfg);
    let resp = p
        .send_bounded(req, timeout, MAX_RULES_BYTES)
        .map_err(|e| match e {
            SendError::TooLarge(max) => {
                format!("rules from {shown} exceed the {max}-byte limit and were not used")
            }
            SendError::Timeout(m) => format!(
                "rules URL {shown} did not answer within {} ms: {m}",
                timeout.as_millis()
            ),
            e => format!("rules URL {shown} unreachable: {e}"),
        })?;
    let status = resp.status().as_u16();
    if status == 304 && cached.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !(200..300).contains(&status) {
        return Err(format!("rules URL {shown} answered {status}"));
    }
    let header = |name: http::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let text = String::from_utf8(resp.body().clone())
        .map_err(|_| format!("rules from {shown} are not UTF-8"))?;
    let set = rules::parse(&text)
        .map_err(|e| format!("rules from {shown} are invalid and were not used: {e}"))?;
    Ok(Fetched::New(
        Cached {
            url: url.to_string(),
            etag: header(http::header::ETAG),
            last_modified: header(http::header::LAST_MODIFIED),
            text,
            text_hash: None,
            fetched_at_ms: p.now_ms(),
        },
        Box::new(set),
    ))
}
