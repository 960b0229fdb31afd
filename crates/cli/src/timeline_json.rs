//! A [`Timeline`] as JSON: the one schema every timeline producer prints with `--json`
//! (simulate, verify, capture, watch). Documented in the README.

use serde_json::{json, Value};
use tcpstate_fsm::{Side, StepKind, Timeline};

/// `{"title", "endpoints", "steps": [...], "states": {endpoint: [{state, entered_s, duration_s}]}}`.
pub fn timeline_to_json(t: &Timeline) -> Value {
    let steps: Vec<Value> = t
        .steps
        .iter()
        .map(|step| {
            let mut v = json!({
                "at_s": step.at.as_secs_f64(),
                "endpoint": t.name(step.side),
            });
            let obj = v.as_object_mut().expect("object");
            match &step.kind {
                StepKind::Call(call) => {
                    obj.insert("kind".into(), json!("call"));
                    obj.insert("call".into(), json!(call.kind.to_string()));
                    if let Err(e) = &call.result {
                        obj.insert("error".into(), json!(e));
                    }
                }
                StepKind::Sent {
                    id,
                    segment,
                    lost,
                    retransmission,
                } => {
                    obj.insert("kind".into(), json!("sent"));
                    obj.insert("id".into(), json!(id));
                    obj.insert("segment".into(), segment_json(segment));
                    obj.insert("lost".into(), json!(lost));
                    obj.insert("retransmission".into(), json!(retransmission));
                }
                StepKind::Received { id, segment } => {
                    obj.insert("kind".into(), json!("received"));
                    if let Some(id) = id {
                        obj.insert("id".into(), json!(id));
                    }
                    obj.insert("segment".into(), segment_json(segment));
                }
                StepKind::Timer(kind) => {
                    obj.insert("kind".into(), json!("timer"));
                    obj.insert("timer".into(), json!(kind.name()));
                }
                StepKind::Transition { from, to, trigger } => {
                    obj.insert("kind".into(), json!("transition"));
                    obj.insert("from".into(), json!(from.name()));
                    obj.insert("to".into(), json!(to.name()));
                    obj.insert("trigger".into(), json!(trigger.label()));
                }
                StepKind::Note(text) => {
                    obj.insert("kind".into(), json!("note"));
                    obj.insert("text".into(), json!(text));
                }
            }
            v
        })
        .collect();
    let mut states = serde_json::Map::new();
    for side in [Side::A, Side::B] {
        let dwell: Vec<Value> = t
            .dwell(side)
            .into_iter()
            .map(|(state, entered, duration)| {
                json!({
                    "state": state.name(),
                    "entered_s": entered.as_secs_f64(),
                    "duration_s": duration.as_secs_f64(),
                })
            })
            .collect();
        states.insert(t.name(side).to_string(), Value::Array(dwell));
    }
    json!({
        "title": t.title,
        "endpoints": [t.name(Side::A), t.name(Side::B)],
        "steps": steps,
        "states": states,
    })
}

fn segment_json(s: &tcpstate_fsm::Segment) -> Value {
    let mut v = json!({
        "flags": s.flags.short(),
        "seq": s.seq.0,
        "len": s.len,
        "window": s.window,
    });
    if s.flags.ack() {
        v["ack"] = json!(s.ack.0);
    }
    v
}
