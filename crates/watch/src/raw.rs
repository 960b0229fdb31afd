//! The per-CPU binary ring buffer pages (`per_cpu/cpuN/trace_pipe_raw`) decoded into
//! [`TraceEvent`]s, without the kernel formatting text lines: measured at 62% of the text
//! reader's CPU (BENCHMARKS.md), which is what made the text reader fall behind.
//!
//! A page is `struct buffer_data_page` (kernel/trace/ring_buffer.c): `u64 time_stamp`,
//! `local_t commit` (8 bytes on 64-bit; its top bits flag missed events), then events,
//! each with a 32-bit header `type_len:5, time_delta:27` (`struct ring_buffer_event`).
//! Field offsets come from each event's `format` file, never hard-coded. Pure byte
//! handling: garbage gives an error or nothing, never a panic (property-tested).

use crate::event::{EventKind, Task, TraceEvent};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tcpstate_fsm::State;

/// `RB_MISSED_EVENTS`: events were lost before this page.
const MISSED_EVENTS: u64 = 1 << 31;
/// `RB_MISSED_STORED`: the count of lost events is stored after the data.
const MISSED_STORED: u64 = 1 << 30;
const PADDING: u32 = 29;
const TIME_EXTEND: u32 = 30;
const TIME_STAMP: u32 = 31;
/// `TRACE_FLAG_HARDIRQ | TRACE_FLAG_SOFTIRQ | TRACE_FLAG_NMI` (kernel/trace/trace.h).
const IRQ_FLAGS: u8 = 0x08 | 0x10 | 0x40;

/// One field of an event's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Byte offset in the record.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// An event's `format` file: its id, its fields, and the symbol table of its `reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    /// `ID:`.
    pub id: u16,
    /// Fields by name (array brackets removed).
    pub fields: HashMap<String, Field>,
    /// `__print_symbolic(REC->reason, ...)` values, for `tcp_send_reset`.
    pub reasons: HashMap<u32, String>,
}

/// Parses a `format` file.
pub fn parse_format(text: &str) -> Option<Format> {
    let mut f = Format::default();
    let mut have_id = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(id) = line.strip_prefix("ID:") {
            f.id = id.trim().parse().ok()?;
            have_id = true;
        } else if let Some(rest) = line.strip_prefix("field:") {
            let mut decl = "";
            let (mut offset, mut size) = (None, None);
            for part in rest.split(';') {
                let part = part.trim();
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse().ok();
                } else if decl.is_empty() {
                    decl = part;
                }
            }
            let name = decl.rsplit(' ').next().unwrap_or("");
            let name = name.split('[').next().unwrap_or("");
            if let (Some(offset), Some(size)) = (offset, size) {
                if !name.is_empty() {
                    f.fields.insert(name.to_string(), Field { offset, size });
                }
            }
        } else if let Some(pos) = line.find("__print_symbolic(REC->reason") {
            let mut rest = &line[pos..];
            while let Some(open) = rest.find("{ ") {
                rest = &rest[open + 2..];
                let Some((num, tail)) = rest.split_once(", \"") else {
                    break;
                };
                let Some((name, tail)) = tail.split_once('"') else {
                    break;
                };
                if let Ok(n) = num.trim().parse::<u32>() {
                    f.reasons.insert(n, name.to_string());
                }
                rest = tail;
            }
        }
    }
    have_id.then_some(f)
}

/// The formats of the events tcpstate enables.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    /// `sock:inet_sock_set_state`.
    pub set_state: Option<Format>,
    /// `tcp:tcp_send_reset`.
    pub send_reset: Option<Format>,
    /// `tcp:tcp_receive_reset`.
    pub receive_reset: Option<Format>,
    /// `tcp:tcp_destroy_sock`.
    pub destroy: Option<Format>,
}

fn get<'a>(rec: &'a [u8], f: &Format, name: &str) -> Option<&'a [u8]> {
    let fl = f.fields.get(name)?;
    rec.get(fl.offset..fl.offset.checked_add(fl.size)?)
}

fn uint(rec: &[u8], f: &Format, name: &str) -> Option<u64> {
    let b = get(rec, f, name)?;
    Some(match b.len() {
        1 => b[0].into(),
        2 => u16::from_ne_bytes(b.try_into().ok()?).into(),
        4 => u32::from_ne_bytes(b.try_into().ok()?).into(),
        8 => u64::from_ne_bytes(b.try_into().ok()?),
        _ => return None,
    })
}

fn tuple(rec: &[u8], f: &Format) -> Option<(SocketAddr, SocketAddr)> {
    let family = uint(rec, f, "family")?;
    let sport = uint(rec, f, "sport")? as u16;
    let dport = uint(rec, f, "dport")? as u16;
    let (s, d): (IpAddr, IpAddr) = match family {
        2 => {
            let s: [u8; 4] = get(rec, f, "saddr")?.try_into().ok()?;
            let d: [u8; 4] = get(rec, f, "daddr")?.try_into().ok()?;
            (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())
        }
        10 => {
            let s: [u8; 16] = get(rec, f, "saddr_v6")?.try_into().ok()?;
            let d: [u8; 16] = get(rec, f, "daddr_v6")?.try_into().ok()?;
            (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())
        }
        _ => return None,
    };
    Some((SocketAddr::new(s, sport), SocketAddr::new(d, dport)))
}

/// A `struct sockaddr_in{,6}` stored in a `__u8[28]` (tcp_send_reset's saddr/daddr).
fn sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        2 => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv4Addr::from(a).into(), port))
        }
        10 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv6Addr::from(a).into(), port))
        }
        _ => None,
    }
}

fn state(code: u64) -> Option<State> {
    State::from_kernel_code(u8::try_from(code).ok()?).ok()
}

/// Decodes one record (common header + fields).
pub fn decode_record(rec: &[u8], ts: Duration, cpu: u32, fm: &Formats) -> Option<TraceEvent> {
    let id = u16::from_ne_bytes(rec.get(0..2)?.try_into().ok()?);
    let flags = *rec.get(2)?;
    let pid = i32::from_ne_bytes(rec.get(4..8)?.try_into().ok()?);
    fn is(f: &Option<Format>, id: u16) -> Option<&Format> {
        f.as_ref().filter(|f| f.id == id)
    }
    let kind = if let Some(f) = is(&fm.set_state, id) {
        if uint(rec, f, "protocol")? != 6 {
            return None;
        }
        let (local, remote) = tuple(rec, f)?;
        EventKind::SetState {
            local,
            remote,
            old: state(uint(rec, f, "oldstate")?)?,
            new: state(uint(rec, f, "newstate")?)?,
        }
    } else if let Some(f) = is(&fm.send_reset, id) {
        let code = uint(rec, f, "reason").unwrap_or(0) as u32;
        EventKind::SendReset {
            local: sockaddr(get(rec, f, "saddr")?)?,
            remote: sockaddr(get(rec, f, "daddr")?)?,
            state: uint(rec, f, "state").and_then(state),
            reason: f
                .reasons
                .get(&code)
                .cloned()
                .unwrap_or_else(|| "NOT_SPECIFIED".to_string()),
        }
    } else if let Some(f) = is(&fm.receive_reset, id) {
        let (local, remote) = tuple(rec, f)?;
        EventKind::ReceiveReset {
            local,
            remote,
            cookie: uint(rec, f, "sock_cookie")?,
        }
    } else if let Some(f) = is(&fm.destroy, id) {
        let (local, remote) = tuple(rec, f)?;
        EventKind::Destroy {
            local,
            remote,
            cookie: uint(rec, f, "sock_cookie")?,
        }
    } else {
        return None;
    };
    Some(TraceEvent {
        ts,
        cpu,
        task: Task {
            comm: String::new(),
            pid,
            interrupt: flags & IRQ_FLAGS != 0,
        },
        kind,
    })
}

/// What one page held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Records that were not one of ours or did not decode.
    pub undecoded: u64,
    /// The page says events were lost before it (count when stored, else 1).
    pub missed: u64,
}

/// Decodes one page read from `trace_pipe_raw`, calling `out` for every event.
pub fn decode_page(
    page: &[u8],
    cpu: u32,
    fm: &Formats,
    mut out: impl FnMut(TraceEvent),
) -> PageStats {
    let mut st = PageStats::default();
    let Some(hdr) = page.get(0..16) else {
        return st;
    };
    let mut ts = u64::from_ne_bytes(hdr[0..8].try_into().unwrap_or_default());
    let commit = u64::from_ne_bytes(hdr[8..16].try_into().unwrap_or_default());
    let len = (commit & !(MISSED_EVENTS | MISSED_STORED)) as usize;
    let data = &page[16..];
    let len = len.min(data.len());
    if commit & MISSED_EVENTS != 0 {
        st.missed = if commit & MISSED_STORED != 0 {
            data.get(len..len + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes)
                .unwrap_or(1)
        } else {
            1
        };
    }
    let data = &data[..len];
    let mut i = 0;
    while i + 4 <= data.len() {
        let h = u32::from_ne_bytes(data[i..i + 4].try_into().unwrap_or_default());
        let type_len = h & 0x1f;
        let delta = u64::from(h >> 5);
        let arr0 = data
            .get(i + 4..i + 8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes);
        match type_len {
            PADDING => {
                let Some(a) = arr0 else { break };
                if delta == 0 && a == 0 {
                    break; // the rest of the page is padding
                }
                ts = ts.wrapping_add(delta);
                i += 4 + a as usize;
            }
            TIME_EXTEND => {
                let Some(a) = arr0 else { break };
                ts = ts.wrapping_add((u64::from(a) << 27) | delta);
                i += 8;
            }
            TIME_STAMP => {
                let Some(a) = arr0 else { break };
                // Absolute (the upper bits of the page stamp are kept).
                let abs = (u64::from(a) << 27) | delta;
                ts = (ts & !((1u64 << 59) - 1)) | abs;
                i += 8;
            }
            t => {
                ts = ts.wrapping_add(delta);
                let (start, n) = if t == 0 {
                    let Some(a) = arr0 else { break };
                    (i + 8, (a as usize).saturating_sub(4))
                } else {
                    (i + 4, t as usize * 4)
                };
                let Some(rec) = data.get(start..start + n) else {
                    break;
                };
                match decode_record(rec, Duration::from_nanos(ts), cpu, fm) {
                    Some(ev) => out(ev),
                    None => st.undecoded += 1,
                }
                i = start + n;
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The format of this kernel (6.18), abbreviated to the lines parse_format reads.
    const SET_STATE_FORMAT: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s\", REC->family
";
    const RESET_FORMAT_TAIL: &str = "print fmt: \"x\", __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 11, \"TCP_ABORT_ON_CLOSE\" }, { 14, \"TCP_STATE\" })";

    fn record(old: u32, new: u32, flags: u8) -> Vec<u8> {
        let mut r = vec![0u8; 72];
        r[0..2].copy_from_slice(&2287u16.to_ne_bytes());
        r[2] = flags;
        r[4..8].copy_from_slice(&4242i32.to_ne_bytes());
        r[16..20].copy_from_slice(&old.to_ne_bytes());
        r[20..24].copy_from_slice(&new.to_ne_bytes());
        r[24..26].copy_from_slice(&40000u16.to_ne_bytes());
        r[26..28].copy_from_slice(&5000u16.to_ne_bytes());
        r[28..30].copy_from_slice(&2u16.to_ne_bytes());
        r[30..32].copy_from_slice(&6u16.to_ne_bytes());
        r[32..36].copy_from_slice(&[127, 0, 0, 1]);
        r[36..40].copy_from_slice(&[127, 0, 0, 2]);
        r
    }

    fn page(events: &[(u32, Vec<u8>)], base: u64) -> Vec<u8> {
        let mut data = Vec::new();
        for (delta, rec) in events {
            // type_len 0: the length word, then the record (always valid).
            data.extend_from_slice(&(delta << 5).to_ne_bytes());
            data.extend_from_slice(&(rec.len() as u32 + 4).to_ne_bytes());
            data.extend_from_slice(rec);
        }
        let mut p = Vec::new();
        p.extend_from_slice(&base.to_ne_bytes());
        p.extend_from_slice(&(data.len() as u64).to_ne_bytes());
        p.extend_from_slice(&data);
        p.resize(4096, 0);
        p
    }

    fn formats() -> Formats {
        Formats {
            set_state: parse_format(SET_STATE_FORMAT),
            ..Formats::default()
        }
    }

    #[test]
    fn format_file_fields_and_reasons() {
        let f = parse_format(SET_STATE_FORMAT).unwrap();
        assert_eq!(f.id, 2287);
        assert_eq!(
            f.fields["saddr_v6"],
            Field {
                offset: 40,
                size: 16
            }
        );
        assert_eq!(f.fields["common_pid"], Field { offset: 4, size: 4 });
        let r = parse_format(&format!("ID: 7\n{RESET_FORMAT_TAIL}")).unwrap();
        assert_eq!(r.reasons[&11], "TCP_ABORT_ON_CLOSE");
        assert_eq!(r.reasons[&14], "TCP_STATE");
        assert!(parse_format("garbage").is_none());
    }

    #[test]
    fn decodes_a_page_with_deltas_and_softirq_flag() {
        let p = page(
            &[(0, record(1, 4, 0)), (1500, record(4, 5, 0x10))],
            1_000_000_000,
        );
        let mut evs = Vec::new();
        let st = decode_page(&p, 1, &formats(), |e| evs.push(e));
        assert_eq!(st, PageStats::default());
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].ts, Duration::from_secs(1));
        assert_eq!(evs[1].ts, Duration::from_nanos(1_000_001_500));
        assert!(!evs[0].task.interrupt);
        assert!(evs[1].task.interrupt);
        assert_eq!(evs[1].task.pid, 4242);
        assert_eq!(
            evs[1].kind,
            EventKind::SetState {
                local: "127.0.0.1:40000".parse().unwrap(),
                remote: "127.0.0.2:5000".parse().unwrap(),
                old: State::FinWait1,
                new: State::FinWait2,
            }
        );
    }

    #[test]
    fn missed_events_flag_is_reported() {
        let mut p = page(&[(0, record(1, 4, 0))], 5);
        let commit = u64::from_ne_bytes(p[8..16].try_into().unwrap()) | MISSED_EVENTS;
        p[8..16].copy_from_slice(&commit.to_ne_bytes());
        let st = decode_page(&p, 0, &formats(), |_| {});
        assert_eq!(st.missed, 1);
    }

    #[test]
    fn sockaddr_storage() {
        let mut b = [0u8; 28];
        b[0..2].copy_from_slice(&10u16.to_ne_bytes());
        b[2..4].copy_from_slice(&443u16.to_be_bytes());
        b[8..24].copy_from_slice(&"::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(sockaddr(&b), Some("[::1]:443".parse().unwrap()));
        assert_eq!(sockaddr(&[0u8; 3]), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage_pages(p in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_page(&p, 0, &formats(), |_| {});
        }

        #[test]
        fn never_panics_on_garbage_records(r in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode_record(&r, Duration::ZERO, 0, &formats());
        }
    }
}
