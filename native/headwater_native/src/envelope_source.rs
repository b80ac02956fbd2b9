//! The envelope's `source` block: the four fields the columns need (position, ts_ms, gtid,
//! schema_version), the others checked and skipped.
//!
//! The changes of one transaction share their source block up to `"row"` (about 300 bytes of a
//! 700-byte envelope), and the same bytes parse to the same fields: each block is compared with
//! the previous envelope's, and parsing resumes at the last member that starts inside the bytes
//! they share, with the fields seen before it (their values are still in `Envelope` from the
//! previous parse, since a field is only ever read once per block).

use super::json::{key_name, Reader};
use super::{Envelope, Refusal};

/// The previous envelope's source block and where each of its members starts.
#[derive(Default)]
pub(super) struct SourceMemo<'a> {
    block: &'a [u8], // from its '{' to just after its '}'
    // per member: the offset of its key from the '{', and which fields came before it
    members: Vec<(usize, [bool; 4])>,
}

/// How many first bytes ``a`` and ``b`` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

pub(super) fn read_source<'a>(
    r: &mut Reader<'a>,
    env: &mut Envelope,
    memo: &mut SourceMemo<'a>,
) -> Result<(), Refusal> {
    r.expect(b'{')?;
    let open = r.i - 1;
    // which of position, ts_ms, gtid, schema_version were seen
    let mut seen = [false; 4];
    let shared = common_prefix(&r.s[open..], memo.block);
    match memo.members.iter().rposition(|(at, _)| *at <= shared) {
        Some(k) => {
            // the bytes before this member are the previous block's: so is their parse
            let (at, before) = memo.members[k];
            memo.members.truncate(k);
            r.i = open + at;
            seen = before;
        }
        None => {
            memo.members.clear();
            if r.peek()? == b'}' {
                return Err("a source without position, ts_ms, gtid or schema_version");
            }
        }
    }
    loop {
        r.peek()?;
        memo.members.push((r.i - open, seen));
        let (key, escaped) = r.raw_string()?;
        r.expect(b':')?;
        read_member(r, env, key, escaped, &mut seen)?;
        match r.peek()? {
            b',' => r.i += 1,
            b'}' => {
                r.i += 1;
                break;
            }
            _ => return Err("not the JSON an envelope is"),
        }
    }
    memo.block = &r.s[open..r.i];
    if seen != [true; 4] {
        return Err("a source without position, ts_ms, gtid or schema_version");
    }
    Ok(())
}

fn read_member(
    r: &mut Reader<'_>,
    env: &mut Envelope,
    key: &[u8],
    escaped: bool,
    seen: &mut [bool; 4],
) -> Result<(), Refusal> {
    let mut unescaped = Vec::new();
    let name = key_name(key, escaped, &mut unescaped)?;
    // one match (by length first) rather than a compare per name: most keys are skipped
    let field = match name {
        b"position" => 0,
        b"ts_ms" => 1,
        b"gtid" => 2,
        b"schema_version" => 3,
        _ => return r.skip(2),
    };
    if seen[field] {
        return Err("a source field given twice");
    }
    seen[field] = true;
    if r.peek()? == b'n' {
        return Err("a null source field");
    }
    match field {
        0 => {
            env.position.clear();
            r.string_into(&mut env.position)
        }
        1 => {
            let v = r.integer()?;
            env.ts_ms = i64::try_from(v).map_err(|_| "source.ts_ms out of range")?;
            Ok(())
        }
        2 => {
            env.gtid.clear();
            r.string_into(&mut env.gtid)
        }
        _ => {
            env.version.clear();
            r.string_into(&mut env.version)
        }
    }
}
