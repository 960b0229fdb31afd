//! One paragraph per counterexample: what the finding means and which duty of TIME_WAIT
//! (or of the application) the variant removed.

use crate::{Config, Property, TimeWaitMode};

/// Why the variant lets this happen, in a sentence.
fn variant_cause(cfg: &Config) -> &'static str {
    if !cfg.reack {
        "This variant's TIME_WAIT ignores a retransmitted FIN (--no-reack), so the peer never gets the ACK it is waiting for."
    } else if cfg.time_wait == TimeWaitMode::Zero {
        "Without TIME_WAIT (--time-wait 0) the active closer forgets the connection the moment it ACKs the peer's FIN: the 4-tuple is free at once although segments of the old connection may still be in flight, and a lost final ACK can no longer be repeated."
    } else if cfg.time_wait == TimeWaitMode::Short {
        "TIME_WAIT shorter than 2·MSL (--time-wait short) may end while segments of the old connection are still in flight; the reused 4-tuple then meets them."
    } else if cfg.rst_kills_time_wait {
        "An RST at RCV.NXT ends TIME_WAIT (RFC 9293's text, Linux's default tcp_rfc1337=0): an RST provoked by an old duplicate assassinates TIME_WAIT early (RFC 1337 hazard H1/H2), with the same effect as having none."
    } else if !cfg.server_closes {
        "The server's application never calls close(): nothing but the application can move its connection out of CLOSE_WAIT."
    } else {
        "The variant keeps TIME_WAIT at 2·MSL, re-ACKing and ignoring RSTs; a violation here is a defect of the machine or of the model's bounds."
    }
}

pub(crate) fn explain(property: Property, cfg: &Config, finding: &str) -> String {
    let why = match property {
        Property::NoCrossIncarnation => {
            "The incarnation tags are invisible to TCP: with the ISN reused, an old segment's sequence numbers fall in the new connection's window and it is taken as new data, a new FIN or a handshake reply. Only TIME_WAIT keeps the 4-tuple busy until every segment of the old connection has died (duty 2: let old duplicates expire)."
        }
        Property::OrderlyClose => {
            "Nobody aborted, but a connection ended badly: the peer's retransmitted FIN (its final ACK was lost) or a late segment met an endpoint that had forgotten the connection and answered with an RST, or the passive closer never got the ACK of its FIN. TIME_WAIT exists to answer that FIN with the ACK again (duty 1: re-ACK a lost final ACK)."
        }
        Property::TimeWaitDuties => {
            "RFC 9293 §3.10.7.4 gives TIME_WAIT one job on arrival: acknowledge a retransmitted FIN and restart the 2·MSL timeout; it sends nothing else, and RFC 1337 (when on) keeps an RST from cutting it short."
        }
        Property::CloseWaitXorTimeWait => {
            "CLOSE_WAIT belongs to the passive closer and TIME_WAIT to the active one; an endpoint going through both, or the two ends being in them at once, would mean the machine mixed up who closed first."
        }
        Property::Termination => {
            "When both applications close, both endpoints must get back to CLOSED (the server to LISTEN) with nothing left in flight, whatever the network did within its bounds."
        }
        Property::CloseWaitNeedsClose => {
            "CLOSE_WAIT means the peer is done and this application has not called close(); no timer of TCP ends it."
        }
    };
    format!("{finding}. {why} {}", variant_cause(cfg))
}
