//! The rules cache's entry (docs/rules-cache.md): a validated [`RuleSet`] encoded so
//! that a request searches its matching index in place and decodes only the rules
//! that can match, compiling only their regexes. Pure: bytes in, bytes out.
//!
//! Every read is bounds-checked. The index (header and structure: offsets, and the
//! index tables with their keys) carries a checksum checked when the entry is
//! opened; each record its own, checked when it is decoded: a damaged entry reads as
//! [`Corrupt`], never as another rule or another candidate.
//!
//! Layout, integers little-endian (lengths, counts and ids LEB128): the index, i.e.
//! the header ([`HEADER_LEN`] bytes) and the structure (rule and notify offsets into
//! the records part, the index tables, each key stored in its table), then the
//! records part: the rule records and the notify blocks (one per distinct `notify`
//! list, shared). The two parts may be stored apart ([`index_len`]): a search reads
//! the index only, and [`View`] asks for the records ([`NEED_RECORDS`]) when a rule
//! must be decoded.

use std::sync::Arc;
use std::time::Duration;

use super::matcher::{compile_bounded, Matcher, Op};
use super::matching::{in_file_order, Compiled, Index, Keyed};
use super::model::{
    Action, Percent, Policy, Rule, RuleSet, RulesFormat, ScaleChange, TitleMatch, UnleashName,
};
use crate::notify::{self, Expr, Notifies, Notify, NotifyEvent, Part, Template};
use crate::problem::Problem;

/// Bump on any change of the bytes [`encode`] writes (the golden test in this file
/// says when): entries are keyed by it, so an upgrade never reads an old encoding.
pub const ENCODING_VERSION: u32 = 2;

const MAGIC: &[u8; 4] = b"RMRC";
/// Where the checksummed part of the header starts (after magic, version, hash,
/// written_at and the checksum itself).
const SUMMED_FROM: usize = 40;
/// Offsets in the header of the sections, each a u32.
const SECTIONS_AT: usize = 68;
const SECTIONS: usize = 10;
/// Where the header keeps the index's length (where the records start), a u32.
const SPLIT_AT: usize = SECTIONS_AT + 4 * SECTIONS;
pub const HEADER_LEN: usize = SPLIT_AT + 4;
// Section numbers.
const RULE_OFFSETS: usize = 0;
const NOTIFY_OFFSETS: usize = 1;
const EXACT: usize = 2;
const PREFIX: usize = 3;
const CONTAINS: usize = 4;
const FIRST2: usize = 5;
const LABEL_EQ: usize = 6;
const LABEL_PREFIX: usize = 7;
const SCAN: usize = 8;
const CATCH_ALL: usize = 9;
/// Deepest notify body decoded (the YAML parser refuses deeper ones anyway).
const MAX_DEPTH: usize = 256;

/// A rule had to be decoded from an entry opened from its index alone: supply the
/// records part ([`View::supply_records`]) and ask again.
pub const NEED_RECORDS: Corrupt = Corrupt("records part not read");

/// The entry is damaged or not what it says it is: parse the rules instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rules cache entry corrupt: {}", self.0)
    }
}

/// A 128-bit content hash: two multiply-rotate lanes, each taking every other
/// 64-bit word, ~0.7 instructions per byte natively (FNV-128 took 43). Not
/// cryptographic: it tells versions of a rules file apart, and whoever can choose
/// the file chooses the rules anyway.
pub fn hash128(b: &[u8]) -> [u8; 16] {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let (mut h1, mut h2): (u64, u64) = (
        0x243f_6a88_85a3_08d3 ^ b.len() as u64,
        0x1319_8a2e_0370_7344,
    );
    let mut blocks = b.chunks_exact(16);
    for c in &mut blocks {
        let w = u128::from_le_bytes(c.try_into().unwrap_or_default());
        h1 = (h1 ^ w as u64).wrapping_mul(K1).rotate_left(29);
        h2 = (h2 ^ (w >> 64) as u64).wrapping_mul(K2).rotate_left(31);
    }
    let mut tail = [0u8; 16];
    tail[..blocks.remainder().len()].copy_from_slice(blocks.remainder());
    let w = u128::from_le_bytes(tail);
    h1 = (h1 ^ w as u64).wrapping_mul(K1);
    h2 = (h2 ^ (w >> 64) as u64).wrapping_mul(K2);
    let mix = |mut x: u64| {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    };
    let a = mix(h1 ^ h2.rotate_left(17));
    let b = mix(h2 ^ a);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// Lower-case hex, as the entry's key and `rules_version` show a hash.
pub fn hex(h: &[u8; 16]) -> String {
    let mut s = String::with_capacity(32);
    for b in h {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

fn sum64(b: &[u8]) -> u64 {
    let h = hash128(b);
    let mut w = [0u8; 8];
    w.copy_from_slice(&h[..8]);
    u64::from_le_bytes(w)
}

/// A record's checksum: it only has to notice damage.
fn sum32(b: &[u8]) -> [u8; 4] {
    let h = hash128(b);
    [h[0], h[1], h[2], h[3]]
}

// ---------------------------------------------------------------- encoding

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&self) -> u32 {
        self.0.len() as u32
    }
    fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// LEB128: lengths, counts and ids are mostly one byte.
    fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn count(&mut self, n: usize) {
        self.var(n as u64);
    }
    fn str(&mut self, s: &str) {
        self.count(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn dur(&mut self, d: Duration) {
        self.var(d.as_secs());
        self.var(u64::from(d.subsec_nanos()));
    }
    fn ids(&mut self, ids: &[u32]) {
        self.u32(ids.len() as u32);
        for &i in ids {
            self.u32(i);
        }
    }
    /// A key -> rule ids table, sorted by key bytes: the count and a fixed-size
    /// offset per key (for binary search), then per key: its length, its bytes, the
    /// id count and ids. The keys are in the index (covered by its checksum), so a
    /// search reads the index value only.
    fn table<'a>(&mut self, map: impl Iterator<Item = (&'a String, &'a Vec<u32>)>) -> u32 {
        let mut entries: Vec<(&String, &Vec<u32>)> = map.collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let at = self.len();
        self.u32(entries.len() as u32);
        let first = self.0.len();
        self.0.resize(first + 4 * entries.len(), 0);
        for (n, (key, ids)) in entries.iter().enumerate() {
            let entry = self.len();
            self.put_u32(first + 4 * n, entry);
            self.str(key);
            self.count(ids.len());
            for &i in ids.iter() {
                self.var(u64::from(i));
            }
        }
        at
    }
    /// A prefix table: the table's offset, then the key lengths in use.
    fn keyed(&mut self, k: &Keyed) -> u32 {
        let table = self.table(k.map.iter());
        let at = self.len();
        self.u32(table);
        self.count(k.lens.len());
        for &l in &k.lens {
            self.count(l);
        }
        at
    }
}

/// The cache entry of `set`, parsed from a text whose [`hash128`] is `hash`.
pub fn encode(set: &RuleSet, hash: &[u8; 16], written_at_ms: i64) -> Vec<u8> {
    let mut o = Out(Vec::with_capacity(64 * 1024));
    o.0.extend_from_slice(MAGIC);
    o.u32(ENCODING_VERSION);
    o.0.extend_from_slice(hash);
    o.u64(written_at_ms as u64);
    o.u64(0); // the structure's checksum, below
    o.u32(0); // total length, below
    o.u8(match set.format {
        RulesFormat::Keptn06 => 0,
        RulesFormat::Keptn08 => 1,
        RulesFormat::Own => 2,
    });
    o.u8(u8::from(set.max_changes.is_some()));
    o.u8(0);
    o.u8(0);
    let (n, w) = set.max_changes.unwrap_or((0, Duration::ZERO));
    o.u32(n);
    o.u64(w.as_secs());
    o.u32(w.subsec_nanos());
    o.u32(set.rules.len() as u32);
    o.0.resize(HEADER_LEN, 0);
    let mut sections = [0u32; SECTIONS];

    // Distinct notify lists (rules without their own share `defaults.notify`).
    let mut blocks: Vec<&Notifies> = Vec::new();
    let mut seen: std::collections::HashMap<*const Vec<Notify>, u32> = Default::default();
    let mut block_of = Vec::with_capacity(set.rules.len());
    for r in &set.rules {
        // Every empty list is one block.
        let ptr = match r.notify.is_empty() {
            true => std::ptr::null(),
            false => Arc::as_ptr(&r.notify),
        };
        let n = *seen.entry(ptr).or_insert_with(|| {
            blocks.push(&r.notify);
            blocks.len() as u32 - 1
        });
        block_of.push(n);
    }
    // Records, then notify blocks, in their own part (after the index): each a
    // checksum of what follows it, then the body.
    let mut rec = Out(Vec::with_capacity(64 * 1024));
    let item = |o: &mut Out, body: &dyn Fn(&mut Out)| {
        let at = o.0.len();
        o.u32(0);
        body(o);
        let sum = sum32(&o.0[at + 4..]);
        o.0[at..at + 4].copy_from_slice(&sum);
        at..o.0.len()
    };
    let mut records = Vec::with_capacity(set.rules.len());
    for (i, r) in set.rules.iter().enumerate() {
        records.push(item(&mut rec, &|o| rule(o, r, block_of[i])));
    }
    let mut block_at = Vec::with_capacity(blocks.len());
    for b in &blocks {
        block_at.push(item(&mut rec, &|o| notify_block(o, b)));
    }

    // The structure, right after the header: offsets (into the records part), then
    // the index as `Index::build` made it for `RuleSet::find`.
    sections[RULE_OFFSETS] = o.len();
    for r in &records {
        o.u32(r.start as u32);
    }
    o.u32(records.last().map_or(0, |r| r.end) as u32);
    sections[NOTIFY_OFFSETS] = o.len();
    o.u32(blocks.len() as u32);
    for b in &block_at {
        o.u32(b.start as u32);
    }
    o.u32(block_at.last().map_or(0, |b| b.end) as u32);
    let ix: &Index = &set.index;
    sections[EXACT] = o.table(ix.exact.iter());
    sections[PREFIX] = o.keyed(&ix.prefix);
    sections[CONTAINS] = o.keyed(&ix.contains.keyed);
    // The first two bytes of the substring keys, as a sorted list rather than the
    // index's 8 KB bit set: few distinct pairs, and every byte is read per request.
    sections[FIRST2] = o.len();
    let pairs: Vec<u16> = (0..ix.contains.first2.len() * 64)
        .filter(|bit| ix.contains.first2[bit / 64] & (1 << (bit % 64)) != 0)
        .map(|bit| bit as u16)
        .collect();
    o.u32(pairs.len() as u32);
    for p in pairs {
        o.0.extend_from_slice(&p.to_le_bytes());
    }
    let eq: Vec<(&String, u32)> = ix
        .label_eq
        .iter()
        .map(|(name, map)| (name, o.table(map.iter())))
        .collect();
    sections[LABEL_EQ] = label_list(&mut o, eq);
    let pre: Vec<(&String, u32)> = ix
        .label_prefix
        .iter()
        .map(|(name, k)| (name, o.keyed(k)))
        .collect();
    sections[LABEL_PREFIX] = label_list(&mut o, pre);
    sections[SCAN] = o.len();
    o.ids(&ix.scan);
    sections[CATCH_ALL] = o.len();
    o.ids(&ix.catch_all);
    for (i, s) in sections.iter().enumerate() {
        o.put_u32(SECTIONS_AT + 4 * i, *s);
    }
    let split = o.len();
    o.put_u32(SPLIT_AT, split);
    o.put_u32(40, split + rec.len());
    // Last: the header and the structure are final.
    let sum = index_sum(&o.0);
    o.0[32..40].copy_from_slice(&sum.to_le_bytes());
    o.0.extend_from_slice(&rec.0);
    o.0
}

/// The checksum of the index: the header after the checksum, and the structure.
fn index_sum(index: &[u8]) -> u64 {
    sum64(&index[SUMMED_FROM..])
}

/// Where an entry's records part starts (the index's length), if it says.
pub fn index_len(entry: &[u8]) -> Option<usize> {
    let b = Buf(entry);
    let split = b.at(SPLIT_AT).ok()?;
    (HEADER_LEN..=entry.len()).contains(&split).then_some(split)
}

/// Per label name: the name and the offset of its table.
fn label_list(o: &mut Out, names: Vec<(&String, u32)>) -> u32 {
    let at = o.len();
    o.count(names.len());
    for (name, sub) in names {
        o.str(name);
        o.u32(sub);
    }
    at
}

/// `None`, `Some(false)`, `Some(true)` as 0, 1, 2 (two bits of a flags byte).
fn tri(b: Option<bool>) -> u8 {
    match b {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn rule(o: &mut Out, r: &Rule, block: u32) {
    o.str(&r.name);
    o.var(u64::from(block) << 1 | u64::from(r.catch_all));
    o.count(r.titles.len());
    for t in &r.titles {
        match t {
            TitleMatch::Exact(s) => {
                o.u8(0);
                o.str(s);
            }
            TitleMatch::Prefix(s) => {
                o.u8(1);
                o.str(s);
            }
            TitleMatch::Regex(re) => {
                o.u8(2);
                o.str(re.as_str());
            }
        }
    }
    o.count(r.labels.len());
    for m in &r.labels {
        o.str(&m.name);
        o.u8(match m.op {
            Op::Equal => 0,
            Op::NotEqual => 1,
            Op::Regex => 2,
            Op::NotRegex => 3,
        });
        o.str(&m.value);
    }
    // Each action: one byte of kind (bits 0-1), flags (2-4) and revert (5-6), then
    // its values, the optional ones only when present.
    o.count(r.actions.len());
    for a in &r.actions {
        match a {
            Action::Flag {
                flag,
                enabled,
                project,
                environment,
                revert,
            } => {
                o.u8(u8::from(*enabled) << 2
                    | u8::from(project.is_some()) << 3
                    | u8::from(environment.is_some()) << 4
                    | tri(*revert) << 5);
                o.str(flag.as_str());
                for n in [project, environment].into_iter().flatten() {
                    o.str(n.as_str());
                }
            }
            Action::Rollout {
                flag,
                percent,
                strategy,
                project,
                environment,
                revert,
            } => {
                o.u8(1
                    | u8::from(strategy.is_some()) << 2
                    | u8::from(project.is_some()) << 3
                    | u8::from(environment.is_some()) << 4
                    | tri(*revert) << 5);
                o.str(flag.as_str());
                o.u8(percent.get());
                if let Some(s) = strategy {
                    o.str(s);
                }
                for n in [project, environment].into_iter().flatten() {
                    o.str(n.as_str());
                }
            }
            Action::Scale {
                change,
                revert,
                on_resolve,
            } => {
                o.u8(2 | u8::from(on_resolve.is_some()) << 2 | tri(*revert) << 5);
                scale(o, *change);
                if let Some(c) = on_resolve {
                    scale(o, *c);
                }
            }
        }
    }
    // The policy: one byte of presence and tri-state bits, then the values present.
    let p = &r.policy;
    o.u8(u8::from(p.cooldown.is_some())
        | u8::from(p.max_actions.is_some()) << 1
        | u8::from(p.escalate_after.is_some()) << 2
        | u8::from(p.dry_run) << 3
        | tri(p.revert) << 4
        | tri(p.verify) << 6);
    if let Some(d) = p.cooldown {
        o.dur(d);
    }
    if let Some((n, w)) = p.max_actions {
        o.var(u64::from(n));
        o.dur(w);
    }
    if let Some(d) = p.escalate_after {
        o.dur(d);
    }
}

fn scale(o: &mut Out, c: ScaleChange) {
    match c {
        ScaleChange::Delta(d) => {
            o.u8(0);
            o.u32(d as u32);
        }
        ScaleChange::Target(t) => {
            o.u8(1);
            o.u32(t);
        }
    }
}

fn notify_block(o: &mut Out, b: &[Notify]) {
    o.count(b.len());
    for n in b {
        o.str(&n.channel);
        o.count(n.on.len());
        for e in &n.on {
            o.u8(match e {
                NotifyEvent::Act => 0,
                NotifyEvent::Revert => 1,
                NotifyEvent::CircuitOpen => 2,
                NotifyEvent::BudgetExhausted => 3,
            });
        }
        o.str(n.method);
        o.opt_str(n.path.as_deref());
        o.count(n.headers.len());
        for (k, v) in &n.headers {
            o.str(k);
            o.str(v);
        }
        template(o, &n.body);
    }
}

fn template(o: &mut Out, t: &Template) {
    match t {
        Template::Lit(v) => {
            o.u8(0);
            o.str(&v.to_string());
        }
        Template::One(e) => {
            o.u8(1);
            o.str(&e.source());
        }
        Template::Text(parts) => {
            o.u8(2);
            o.count(parts.len());
            for p in parts {
                match p {
                    Part::Lit(s) => {
                        o.u8(0);
                        o.str(s);
                    }
                    Part::Expr(e) => {
                        o.u8(1);
                        o.str(&e.source());
                    }
                }
            }
        }
        Template::Array(items) => {
            o.u8(3);
            o.count(items.len());
            for i in items {
                template(o, i);
            }
        }
        Template::Object(fields) => {
            o.u8(4);
            o.count(fields.len());
            for (k, v) in fields {
                o.str(k);
                template(o, v);
            }
        }
    }
}

// ---------------------------------------------------------------- reading

/// Bounds-checked reads at absolute positions.
#[derive(Clone, Copy)]
struct Buf<'a>(&'a [u8]);

impl<'a> Buf<'a> {
    fn bytes(self, at: usize, len: usize) -> Result<&'a [u8], Corrupt> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .ok_or(Corrupt("out of bounds"))
    }
    fn u32(self, at: usize) -> Result<u32, Corrupt> {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.bytes(at, 4)?);
        Ok(u32::from_le_bytes(w))
    }
    fn u64(self, at: usize) -> Result<u64, Corrupt> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.bytes(at, 8)?);
        Ok(u64::from_le_bytes(w))
    }
    fn at(self, at: usize) -> Result<usize, Corrupt> {
        self.u32(at).map(|v| v as usize)
    }
    /// A list of rule ids (count, then ids).
    fn ids(self, at: usize) -> Result<Vec<u32>, Corrupt> {
        let n = self.at(at)?;
        let raw = self.bytes(at + 4, n.checked_mul(4).ok_or(Corrupt("count"))?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The ids of `key` in the table at `table` (binary search on the key bytes).
    fn table_get(self, table: usize, key: &[u8], out: &mut Vec<u32>) -> Result<(), Corrupt> {
        let n = self.at(table)?;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let entry = self.at(table + 4 + 4 * mid)?;
            let mut c = Cur {
                b: self.0,
                at: entry,
            };
            let len = c.count()?;
            let k = c.take(len)?;
            match k.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    for _ in 0..c.count()? {
                        out.push(c.var32()?);
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// `Keyed::prefixes_of`: the ids of every key that is a prefix of `s`.
    fn prefixes_of(self, keyed: usize, s: &str, out: &mut Vec<u32>) -> Result<(), Corrupt> {
        let table = self.at(keyed)?;
        let mut c = Cur {
            b: self.0,
            at: keyed + 4,
        };
        for _ in 0..c.count()? {
            let len = c.count()?;
            if len > s.len() {
                break;
            }
            if s.is_char_boundary(len) {
                self.table_get(table, &s.as_bytes()[..len], out)?;
            }
        }
        Ok(())
    }

    /// `Substrings::occurring_in`: the ids of every key occurring in `s`.
    fn occurring_in(
        self,
        keyed: usize,
        first2: usize,
        s: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), Corrupt> {
        let n = self.at(first2)?;
        if n == 0 {
            return Ok(());
        }
        let pairs = self.bytes(first2 + 4, n.checked_mul(2).ok_or(Corrupt("count"))?)?;
        for (p, w) in s.as_bytes().windows(2).enumerate() {
            let pair = u16::from(w[0]) << 8 | u16::from(w[1]);
            let (mut lo, mut hi, mut found) = (0, n, false);
            while lo < hi && !found {
                let mid = lo + (hi - lo) / 2;
                match u16::from_le_bytes([pairs[2 * mid], pairs[2 * mid + 1]]).cmp(&pair) {
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                    std::cmp::Ordering::Equal => found = true,
                }
            }
            if found && s.is_char_boundary(p) {
                self.prefixes_of(keyed, &s[p..], out)?;
            }
        }
        Ok(())
    }
}

/// Reads one record or block: a cursor from its start.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.at.checked_add(n).ok_or(Corrupt("length"))?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or(Corrupt("record too short"))?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn var(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Corrupt("number"))
    }
    fn var32(&mut self) -> Result<u32, Corrupt> {
        u32::try_from(self.var()?).map_err(|_| Corrupt("number"))
    }
    fn count(&mut self) -> Result<usize, Corrupt> {
        self.var32().map(|n| n as usize)
    }
    fn str(&mut self) -> Result<&'a str, Corrupt> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Corrupt("not UTF-8"))
    }
    fn string(&mut self) -> Result<String, Corrupt> {
        self.str().map(str::to_string)
    }
    fn flag(&mut self) -> Result<bool, Corrupt> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Corrupt("flag")),
        }
    }
    fn opt_str(&mut self) -> Result<Option<&'a str>, Corrupt> {
        Ok(if self.flag()? {
            Some(self.str()?)
        } else {
            None
        })
    }
    fn dur(&mut self) -> Result<Duration, Corrupt> {
        let secs = self.var()?;
        let nanos = self.var32()?;
        if nanos >= 1_000_000_000 {
            return Err(Corrupt("duration"));
        }
        Ok(Duration::new(secs, nanos))
    }
    fn name(&mut self) -> Result<UnleashName, Corrupt> {
        UnleashName::parse(self.str()?).map_err(|_| Corrupt("name"))
    }
    fn scale(&mut self) -> Result<ScaleChange, Corrupt> {
        match self.u8()? {
            0 => Ok(ScaleChange::Delta(self.u32()? as i32)),
            1 => Ok(ScaleChange::Target(self.u32()?)),
            _ => Err(Corrupt("scale")),
        }
    }
    fn end(&self) -> Result<(), Corrupt> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(Corrupt("trailing bytes"))
        }
    }
}

/// An opened entry: its header checked, nothing decoded.
#[derive(Debug)]
pub struct View {
    /// The index, or the whole entry (index, then records).
    bytes: Vec<u8>,
    /// The index's length: where the records start in the whole entry.
    split: usize,
    total: usize,
    /// The records part, when it was read apart ([`View::supply_records`]).
    records: std::cell::OnceCell<Vec<u8>>,
    format: RulesFormat,
    max_changes: Option<(u32, Duration)>,
    count: usize,
    sections: [usize; SECTIONS],
}

impl View {
    /// The entry, if it is one of this encoding for the text hashed `hash`, whole
    /// (lengths and the structure's checksum). Records are checked when decoded.
    pub fn open(bytes: Vec<u8>, hash: &[u8; 16]) -> Result<View, Corrupt> {
        let b = Buf(&bytes);
        if b.bytes(0, 4)? != MAGIC {
            return Err(Corrupt("not an entry"));
        }
        if b.u32(4)? != ENCODING_VERSION {
            return Err(Corrupt("another encoding version"));
        }
        if b.bytes(8, 16)? != hash {
            return Err(Corrupt("another rules text"));
        }
        let (total, split) = (b.at(40)?, b.at(SPLIT_AT)?);
        if !(HEADER_LEN..=total).contains(&split) || ![split, total].contains(&bytes.len()) {
            return Err(Corrupt("truncated"));
        }
        let mut sections = [0usize; SECTIONS];
        for (i, s) in sections.iter_mut().enumerate() {
            *s = b.at(SECTIONS_AT + 4 * i)?;
        }
        let count = b.at(64)?;
        if sections[RULE_OFFSETS] != HEADER_LEN {
            return Err(Corrupt("layout"));
        }
        if index_sum(&bytes[..split]) != b.u64(32)? {
            return Err(Corrupt("checksum"));
        }
        let format = match b.bytes(44, 1)?[0] {
            0 => RulesFormat::Keptn06,
            1 => RulesFormat::Keptn08,
            2 => RulesFormat::Own,
            _ => return Err(Corrupt("format")),
        };
        let max_changes = match b.bytes(45, 1)?[0] {
            0 => None,
            _ => {
                let nanos = b.u32(60)?;
                if nanos >= 1_000_000_000 {
                    return Err(Corrupt("duration"));
                }
                Some((b.u32(48)?, Duration::new(b.u64(52)?, nanos)))
            }
        };
        Ok(View {
            format,
            max_changes,
            count,
            sections,
            bytes,
            split,
            total,
            records: std::cell::OnceCell::new(),
        })
    }

    /// The index only (reads of records never go there).
    fn buf(&self) -> Buf<'_> {
        Buf(&self.bytes[..self.split])
    }

    /// Whether the entry was opened from its index alone and its records part has
    /// not been supplied: decoding a rule then says [`NEED_RECORDS`].
    pub fn needs_records(&self) -> bool {
        self.bytes.len() < self.total && self.records.get().is_none()
    }

    /// The records part, read apart from the index. Its records are checked when
    /// decoded, as in a whole entry.
    pub fn supply_records(&self, records: Vec<u8>) -> Result<(), Corrupt> {
        if records.len() != self.total - self.split {
            return Err(Corrupt("records part of another length"));
        }
        let _ = self.records.set(records);
        Ok(())
    }

    fn records(&self) -> Result<&[u8], Corrupt> {
        if self.bytes.len() == self.total {
            return Ok(&self.bytes[self.split..]);
        }
        self.records.get().map(Vec::as_slice).ok_or(NEED_RECORDS)
    }

    pub fn format(&self) -> RulesFormat {
        self.format
    }

    pub fn max_changes(&self) -> Option<(u32, Duration)> {
        self.max_changes
    }

    /// How many rules the file has.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes of item `i` of the offsets list at `list` (records or blocks),
    /// its checksum checked.
    fn item(&self, list: usize, i: usize) -> Result<&[u8], Corrupt> {
        let b = self.buf();
        let start = b.at(list + 4 * i)?;
        let end = b.at(list + 4 * i + 4)?;
        let raw =
            Buf(self.records()?).bytes(start, end.checked_sub(start).ok_or(Corrupt("layout"))?)?;
        let (sum, body) = raw.split_at_checked(4).ok_or(Corrupt("record too short"))?;
        if sum32(body) != sum {
            return Err(Corrupt("record checksum"));
        }
        Ok(body)
    }

    /// The first matching rule, as `RuleSet::find` on the parsed file finds it, with
    /// its position: the index searched in place, candidates decoded one at a time.
    pub fn find(&self, problem: &Problem) -> Result<Option<(usize, Rule)>, Corrupt> {
        let b = self.buf();
        let s = &self.sections;
        let mut candidates = Vec::new();
        for t in problem.titles() {
            b.table_get(s[EXACT], t.as_bytes(), &mut candidates)?;
            b.prefixes_of(s[PREFIX], t, &mut candidates)?;
            b.occurring_in(s[CONTAINS], s[FIRST2], t, &mut candidates)?;
        }
        let mut c = Cur {
            b: &self.bytes[..self.split],
            at: s[LABEL_EQ],
        };
        for _ in 0..c.count()? {
            let name = c.str()?;
            let table = c.u32()? as usize;
            let v = problem.label(name).unwrap_or("");
            b.table_get(table, v.as_bytes(), &mut candidates)?;
        }
        let mut c = Cur {
            b: &self.bytes[..self.split],
            at: s[LABEL_PREFIX],
        };
        for _ in 0..c.count()? {
            let name = c.str()?;
            let keyed = c.u32()? as usize;
            b.prefixes_of(keyed, problem.label(name).unwrap_or(""), &mut candidates)?;
        }
        candidates.sort_unstable();
        candidates.dedup();
        let scan = b.ids(s[SCAN])?;
        let catch_all = b.ids(s[CATCH_ALL])?;
        let mut found = None;
        let hit = in_file_order(&candidates, &scan, &catch_all, |i| {
            let rule = self.rule(i as usize, &mut Vec::new())?;
            let hit = Compiled::new(&rule).matches(&rule, problem);
            if hit {
                found = Some(rule);
            }
            Ok(hit)
        })?;
        Ok(hit.zip(found).map(|(i, r)| (i as usize, r)))
    }

    /// Every rule, as the parse of the text gave them (for `GET /rules`).
    pub fn decode_all(&self) -> Result<RuleSet, Corrupt> {
        let mut blocks = Vec::new();
        let mut rules = Vec::with_capacity(self.count.min(self.bytes.len()));
        for i in 0..self.count {
            rules.push(self.rule(i, &mut blocks)?);
        }
        let mut set = RuleSet::new(self.format, rules);
        set.max_changes = self.max_changes;
        Ok(set)
    }

    /// Rule `i`; `blocks` caches the notify blocks decoded so far (shared, as parsed).
    fn rule(&self, i: usize, blocks: &mut Vec<Option<Notifies>>) -> Result<Rule, Corrupt> {
        if i >= self.count {
            return Err(Corrupt("rule id"));
        }
        let mut c = Cur {
            b: self.item(self.sections[RULE_OFFSETS], i)?,
            at: 0,
        };
        let name = c.string()?;
        let block_and_catch_all = c.count()?;
        let (block, catch_all) = (block_and_catch_all >> 1, block_and_catch_all & 1 == 1);
        let mut titles = Vec::new();
        for _ in 0..c.count()? {
            titles.push(match c.u8()? {
                0 => TitleMatch::Exact(c.string()?),
                1 => TitleMatch::Prefix(c.string()?),
                2 => {
                    let p = c.str()?;
                    TitleMatch::Regex(compile_bounded(p, p).map_err(|_| Corrupt("regex"))?)
                }
                _ => return Err(Corrupt("title")),
            });
        }
        let mut labels = Vec::new();
        for _ in 0..c.count()? {
            let name = c.string()?;
            let op = match c.u8()? {
                0 => Op::Equal,
                1 => Op::NotEqual,
                2 => Op::Regex,
                3 => Op::NotRegex,
                _ => return Err(Corrupt("matcher")),
            };
            let value = c.string()?;
            labels.push(Matcher::new(name, op, value).map_err(|_| Corrupt("matcher"))?);
        }
        let mut actions = Vec::new();
        for _ in 0..c.count()? {
            let head = c.u8()?;
            let bit = |n: u8| head & (1 << n) != 0;
            let revert = untri(head >> 5)?;
            actions.push(match head & 3 {
                0 => Action::Flag {
                    flag: c.name()?,
                    enabled: bit(2),
                    project: if bit(3) { Some(c.name()?) } else { None },
                    environment: if bit(4) { Some(c.name()?) } else { None },
                    revert,
                },
                1 => Action::Rollout {
                    flag: c.name()?,
                    percent: Percent::new(i64::from(c.u8()?)).map_err(|_| Corrupt("percent"))?,
                    strategy: if bit(2) { Some(c.string()?) } else { None },
                    project: if bit(3) { Some(c.name()?) } else { None },
                    environment: if bit(4) { Some(c.name()?) } else { None },
                    revert,
                },
                2 => Action::Scale {
                    change: c.scale()?,
                    on_resolve: if bit(2) { Some(c.scale()?) } else { None },
                    revert,
                },
                _ => return Err(Corrupt("action")),
            });
        }
        let head = c.u8()?;
        let bit = |n: u8| head & (1 << n) != 0;
        let policy = Policy {
            cooldown: if bit(0) { Some(c.dur()?) } else { None },
            max_actions: if bit(1) {
                Some((c.var32()?, c.dur()?))
            } else {
                None
            },
            escalate_after: if bit(2) { Some(c.dur()?) } else { None },
            dry_run: bit(3),
            revert: untri(head >> 4 & 3)?,
            verify: untri(head >> 6)?,
        };
        c.end()?;
        let notify = match blocks.get(block) {
            Some(Some(n)) => n.clone(),
            _ => {
                let n = Arc::new(self.block(block)?);
                if blocks.len() <= block {
                    blocks.resize(block + 1, None);
                }
                blocks[block] = Some(n.clone());
                n
            }
        };
        Ok(Rule {
            name,
            titles,
            labels,
            catch_all,
            actions,
            policy,
            notify,
        })
    }

    fn block(&self, i: usize) -> Result<Vec<Notify>, Corrupt> {
        let list = self.sections[NOTIFY_OFFSETS];
        if i >= self.buf().at(list)? {
            return Err(Corrupt("notify block id"));
        }
        let mut c = Cur {
            b: self.item(list + 4, i)?,
            at: 0,
        };
        let mut out = Vec::new();
        for _ in 0..c.count()? {
            let channel = c.string()?;
            let mut on = Vec::new();
            for _ in 0..c.count()? {
                on.push(match c.u8()? {
                    0 => NotifyEvent::Act,
                    1 => NotifyEvent::Revert,
                    2 => NotifyEvent::CircuitOpen,
                    3 => NotifyEvent::BudgetExhausted,
                    _ => return Err(Corrupt("notify event")),
                });
            }
            let method = notify::method(Some(c.str()?)).map_err(|_| Corrupt("method"))?;
            let path = c.opt_str()?.map(str::to_string);
            let mut headers = Vec::new();
            for _ in 0..c.count()? {
                headers.push((c.string()?, c.string()?));
            }
            let body = read_template(&mut c, 0)?;
            out.push(Notify {
                channel,
                on,
                method,
                path,
                headers,
                body,
            });
        }
        c.end()?;
        Ok(out)
    }
}

/// The inverse of [`tri`] (`bits` in 0..4).
fn untri(bits: u8) -> Result<Option<bool>, Corrupt> {
    match bits & 3 {
        0 => Ok(None),
        1 => Ok(Some(false)),
        2 => Ok(Some(true)),
        _ => Err(Corrupt("flag")),
    }
}

fn read_expr(c: &mut Cur) -> Result<Expr, Corrupt> {
    Expr::parse(c.str()?).map_err(|_| Corrupt("notify placeholder"))
}

fn read_template(c: &mut Cur, depth: usize) -> Result<Template, Corrupt> {
    if depth > MAX_DEPTH {
        return Err(Corrupt("notify body too deep"));
    }
    Ok(match c.u8()? {
        0 => Template::Lit(serde_json::from_str(c.str()?).map_err(|_| Corrupt("notify body"))?),
        1 => Template::One(read_expr(c)?),
        2 => {
            let mut parts = Vec::new();
            for _ in 0..c.count()? {
                parts.push(match c.u8()? {
                    0 => Part::Lit(c.string()?),
                    1 => Part::Expr(read_expr(c)?),
                    _ => return Err(Corrupt("notify text")),
                });
            }
            Template::Text(parts)
        }
        3 => {
            let mut items = Vec::new();
            for _ in 0..c.count()? {
                items.push(read_template(c, depth + 1)?);
            }
            Template::Array(items)
        }
        4 => {
            let mut fields = Vec::new();
            for _ in 0..c.count()? {
                let k = c.string()?;
                fields.push((k, read_template(c, depth + 1)?));
            }
            Template::Object(fields)
        }
        _ => return Err(Corrupt("notify body")),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::problem::{Source, Status};
    use crate::rules::matching::tests::{random_problem, random_rules, Rng};
    use crate::rules::parse;

    /// Every field of remediator/v1: defaults (shared notify, budget), each title and
    /// matcher kind, each action with its options, each policy field, own notify
    /// with headers, path, method and every kind of body template, a catch-all.
    const EVERY_FIELD: &str = r#"apiVersion: remediator/v1
defaults:
  project: shop
  environment: production
  max_changes: 20 per 1h
  notify:
    - channel: slack
      on: [act, revert, circuit_open, budget_exhausted]
      body: {text: "{{ event | slack }} {{ problem.labels | slack }}: {{ actions }}"}
rules:
  - name: exact
    match:
      title: HighFailureRate
      labels: ['service="carts"', 'env!="dev"', 'team=~"a|b"', 'pod!~"test-.*"']
    cooldown: 10m
    max_actions: 3 per 1h
    revert: false
    verify: true
    actions:
      - {flag: EnablePromotion, state: off, project: p1, environment: e1, revert: true}
      - {flag: Rollout, rollout: "25%", strategy: gradual}
  - name: prefix and regex
    match: {title_prefix: "Disk", title_regex: '^Mem(ory)?\d+$'}
    escalate_after: 5m
    dry_run: true
    actions:
      - {scale: "+2", on_resolve: "=1"}
      - {scale: "+3", revert: true}
      - {scale: "=3", revert: false}
      - {scale: "-1"}
    notify:
      - channel: grafana
        on: [act]
        method: PUT
        path: /api/annotations
        headers: {X-Team: ops}
        body:
          n: 1
          f: 1.5
          b: true
          z: null
          one: "{{ problem.labels | tags }}"
          text: "at {{ now + 1h30m }} ({{ now_ms }}) {{ problem.annotations.summary }}"
          list: ["{{ problem.links.panelURL }}", {deep: ["{{ problem.starts_at }}"]}]
          empty: ""
  - name: none
    match: {title: Quiet}
    actions: [{flag: F, state: on}]
    notify: []
  - name: fallback
    default: true
    match: {labels: ['severity=~"crit.*"']}
    actions: [{flag: Fallback, state: on}]
"#;

    fn entry(text: &str) -> (RuleSet, [u8; 16], View) {
        let set = parse(text).unwrap();
        let hash = hash128(text.as_bytes());
        let view = View::open(encode(&set, &hash, 7), &hash).unwrap();
        (set, hash, view)
    }

    fn problem(title: &str, labels: &[(&str, &str)]) -> Problem {
        Problem {
            source: Source::Alertmanager,
            status: Status::Firing,
            title: title.into(),
            summary: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: None,
            fingerprint: "f".into(),
            links: Default::default(),
        }
    }

    /// The decoded rules are the parsed ones, field for field (Debug shows every
    /// field, regexes by their source, notify bodies whole).
    fn assert_decodes_to_the_parse(text: &str) {
        let (set, _, view) = entry(text);
        let all = view.decode_all().unwrap();
        assert_eq!(format!("{:?}", all.rules), format!("{:?}", set.rules));
        assert_eq!((all.format, all.max_changes), (set.format, set.max_changes));
        assert_eq!(
            (view.format(), view.max_changes(), view.len()),
            (set.format, set.max_changes, set.rules.len())
        );
    }

    fn same_verdict(set: &RuleSet, view: &View, p: &Problem) {
        let parsed = set
            .find(p)
            .map(|r| (set.rules.iter().position(|x| std::ptr::eq(x, r)), r));
        let cached = view.find(p).unwrap();
        assert_eq!(
            parsed.map(|(i, r)| (i, r.describe())),
            cached.map(|(i, r)| (Some(i), r.describe())),
            "{p:?}"
        );
    }

    /// The generator of `indexed_find_agrees_with_a_linear_scan`: the cached view
    /// finds the rule a fresh parse finds, by position and by content.
    #[test]
    fn verdicts_equal_a_fresh_parse_over_random_rule_sets() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut matched = 0;
        for _ in 0..300 {
            let n = 1 + rng.below(12);
            let text = random_rules(&mut rng, n);
            let (set, _, view) = entry(&text);
            for _ in 0..100 {
                let p = random_problem(&mut rng);
                same_verdict(&set, &view, &p);
                matched += usize::from(set.find(&p).is_some());
            }
            assert_decodes_to_the_parse(&text);
        }
        assert!(matched > 5_000, "the generator should match: {matched}");
    }

    #[test]
    fn fixtures_and_fuzz_seeds_decode_to_the_parse() {
        let mut files = vec![
            EVERY_FIELD.to_string(),
            include_str!("../../tests/fixtures/rules/tutorial.yaml").to_string(),
            include_str!("../../cli/tests/fixtures/rules/keptn-08.yaml").to_string(),
            include_str!("../../deploy/notify/slack.yaml").to_string(),
            include_str!("../../deploy/notify/grafana-annotation.yaml").to_string(),
            include_str!("../../deploy/notify/alertmanager-silence.yaml").to_string(),
        ];
        let seeds = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/rules");
        for f in std::fs::read_dir(seeds).unwrap() {
            files.push(std::fs::read_to_string(f.unwrap().path()).unwrap());
        }
        let mut valid = 0;
        for text in &files {
            let Ok(set) = parse(text) else { continue };
            valid += 1;
            assert_decodes_to_the_parse(text);
            let (_, _, view) = entry(text);
            for title in [
                "HighFailureRate",
                "cpu_usage",
                "Disk9",
                "Memory12",
                "Quiet",
                "x",
            ] {
                for labels in [
                    &[][..],
                    &[("service", "carts"), ("team", "a")],
                    &[("severity", "critical")],
                ] {
                    same_verdict(&set, &view, &problem(title, labels));
                }
            }
        }
        assert!(valid >= 7, "{valid} valid files");
        // The every-field file shares its defaults' notify between rules, as parsed.
        let all = entry(EVERY_FIELD).2.decode_all().unwrap();
        assert!(Arc::ptr_eq(&all.rules[0].notify, &all.rules[3].notify));
        assert!(all.rules[2].notify.is_empty() && all.rules[3].catch_all);
    }

    /// Guards ENCODING_VERSION: entries are keyed by it, so any change of the bytes
    /// must come with a new version (else an upgrade would read old entries).
    #[test]
    fn encoding_is_pinned() {
        let golden = [
            (EVERY_FIELD, "d0a18285216c57ecf65fb93985768248"),
            (
                include_str!("../../tests/fixtures/rules/tutorial.yaml"),
                "11bb4024d000d5c71fc7a5cef209ad32",
            ),
            (
                include_str!("../../cli/tests/fixtures/rules/keptn-08.yaml"),
                "5986ac45013e01e175359612a5b8035a",
            ),
        ];
        for (text, pinned) in golden {
            let set = parse(text).unwrap();
            let bytes = encode(&set, &hash128(text.as_bytes()), 0);
            assert_eq!(
                hex(&hash128(&bytes)),
                pinned,
                "the encoding changed: bump ENCODING_VERSION and update this hash"
            );
        }
        assert_eq!(ENCODING_VERSION, 2);
    }

    /// An entry read as two parts: the index answers what needs no rule decoded,
    /// says [`NEED_RECORDS`] otherwise, and with the records supplied answers as the
    /// whole entry does.
    #[test]
    fn the_index_alone_answers_or_asks_for_the_records() {
        let (mut asked, mut answered) = (0, 0);
        let tutorial = include_str!("../../tests/fixtures/rules/tutorial.yaml");
        for text in [EVERY_FIELD, tutorial] {
            let (set, hash, whole) = entry(text);
            let split = index_len(&whole.bytes).unwrap();
            assert!(split < whole.bytes.len());
            let index = View::open(whole.bytes[..split].to_vec(), &hash).unwrap();
            assert!(index.needs_records() && !whole.needs_records());
            for p in [
                problem("HighFailureRate", &[("service", "carts")]),
                problem("Disk1", &[]),
                problem("nothing at all", &[]),
                problem("x", &[("severity", "critical")]),
            ] {
                let parsed = set.find(&p).map(|r| r.describe());
                match index.find(&p) {
                    Err(e) => {
                        assert_eq!(e, NEED_RECORDS);
                        asked += 1;
                    }
                    Ok(found) => {
                        assert_eq!(found.map(|(_, r)| r.describe()), parsed);
                        answered += 1;
                    }
                }
                assert_eq!(whole.find(&p).unwrap().map(|(_, r)| r.describe()), parsed);
            }
            assert_eq!(index.decode_all().unwrap_err(), NEED_RECORDS);
            assert!(index.supply_records(vec![0; 3]).is_err());
            index.supply_records(whole.bytes[split..].to_vec()).unwrap();
            assert!(!index.needs_records());
            assert_eq!(
                format!("{:?}", index.decode_all().unwrap().rules),
                format!("{:?}", set.rules)
            );
        }
        assert!(asked > 0 && answered > 0, "{asked} {answered}");
    }

    /// `rules_version` and the entry keys are this hash: pinned, and sensitive to
    /// every byte and to the length.
    #[test]
    fn hash128_is_pinned_and_sees_every_byte() {
        assert_eq!(hex(&hash128(b"")), "69f839d7a5d937e39481153c89c875af");
        assert_eq!(
            hex(&hash128(b"rules:\n")),
            "9c5bcbc6f3be9cda7f1e48e3c7a6f5ba"
        );
        let text = EVERY_FIELD.as_bytes();
        let h = hash128(text);
        let mut seen = std::collections::HashSet::new();
        for i in 0..text.len() {
            let mut t = text.to_vec();
            t[i] ^= 1;
            assert!(seen.insert(hash128(&t)) && hash128(&t) != h, "byte {i}");
        }
        assert_ne!(hash128(&text[..text.len() - 1]), h);
        let mut longer = text.to_vec();
        longer.push(0);
        assert_ne!(hash128(&longer), h);
    }

    /// A damaged entry never gives another verdict: it fails to open, or a read
    /// says Corrupt, or (a byte no read depends on) the answer is the parse's.
    #[test]
    fn damaged_entries_are_refused_never_misread() {
        let (set, hash, view) = entry(EVERY_FIELD);
        let bytes = view.bytes.clone();
        let problems = [
            problem("HighFailureRate", &[("service", "carts"), ("team", "a")]),
            problem("Disk1", &[]),
            problem("Memory1", &[]),
            problem("Quiet", &[]),
            problem("x", &[("severity", "critical")]),
            problem("x", &[]),
        ];
        let check = |damaged: Vec<u8>, what: &str| {
            let Ok(view) = View::open(damaged, &hash) else {
                return 1;
            };
            for p in &problems {
                if let Ok(found) = view.find(p) {
                    let parsed = set.find(p).map(|r| r.describe());
                    assert_eq!(found.map(|(_, r)| r.describe()), parsed, "{what}: {p:?}");
                }
            }
            if let Ok(all) = view.decode_all() {
                assert_eq!(
                    format!("{:?}", all.rules),
                    format!("{:?}", set.rules),
                    "{what}"
                );
            }
            0
        };
        let mut refused = 0;
        for cut in 0..bytes.len() {
            refused += check(bytes[..cut].to_vec(), &format!("truncated at {cut}"));
        }
        // Cut where the records start, it is the index alone (as stored apart).
        assert_eq!(
            refused,
            bytes.len() - 1,
            "every truncation is refused at open, but the index's"
        );
        let split = index_len(&bytes).unwrap();
        assert!(View::open(bytes[..split].to_vec(), &hash).is_ok());
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                check(b.clone(), &format!("byte {i} ^ {bit:#x}"));
                // The same damage with the parts read apart.
                if let Ok(view) = View::open(b[..split].to_vec(), &hash) {
                    if view.supply_records(b[split..].to_vec()).is_ok() {
                        for p in &problems {
                            if let Ok(found) = view.find(p) {
                                let parsed = set.find(p).map(|r| r.describe());
                                assert_eq!(found.map(|(_, r)| r.describe()), parsed, "{i}");
                            }
                        }
                    }
                }
            }
        }
        let mut other = bytes.clone();
        other[4] = 1;
        assert_eq!(
            View::open(other, &hash).unwrap_err(),
            Corrupt("another encoding version")
        );
        assert!(View::open(bytes.clone(), &hash128(b"other text")).is_err());
    }
}
