//! Payload + protocol + rule table → decision. Pure: no I/O, callable from the verdict threads,
//! the binder, `l7mark explain` and `POST /v1/explain` alike.

use serde::Serialize;

use crate::metrics::Outcome;
use crate::proto::{Parsed, http, icp, ip, tls};
use crate::rules::{Decision, Proto, Subject, Table, url};

/// The protocol a first payload is parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadProto {
    /// HTTP/1.x request.
    Http,
    /// TLS ClientHello.
    Tls,
    /// ICP v2 message.
    Icp,
}

impl std::str::FromStr for PayloadProto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(PayloadProto::Http),
            "tls" => Ok(PayloadProto::Tls),
            "icp" => Ok(PayloadProto::Icp),
            other => Err(format!("unknown protocol {other:?} (http, tls or icp)")),
        }
    }
}

/// What was extracted from a payload (printed by `explain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Key {
    /// HTTP request.
    Http {
        /// Request method.
        method: String,
        /// Host (lower case, no port), if any.
        host: Option<String>,
        /// Path (with query).
        path: String,
    },
    /// TLS ClientHello.
    Tls {
        /// server_name, if sent.
        sni: Option<String>,
    },
    /// ICP query.
    Icp {
        /// Opcode name.
        opcode: String,
        /// Request number.
        reqnum: u32,
        /// The query URL.
        url: String,
    },
}

/// A decision on a complete key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explained {
    /// The id of the rule that matched, or null for the default.
    pub rule: Option<String>,
    /// The mark.
    pub mark: u32,
    /// What was extracted.
    pub key: Key,
}

/// Why a payload could not be classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// The payload is not the protocol, or malformed.
    #[error("not a valid {proto} payload: {reason}")]
    Invalid {
        /// Protocol name.
        proto: &'static str,
        /// Parser's reason.
        reason: &'static str,
    },
    /// The payload ends before the key is complete.
    #[error("incomplete {proto} payload: the key is not complete in {len} bytes")]
    Incomplete {
        /// Protocol name.
        proto: &'static str,
        /// Bytes given.
        len: usize,
    },
    /// An ICP message that is not a query.
    #[error("ICP {0} message: only queries are classified")]
    NotAQuery(String),
}

/// Classify a first payload, for `explain` and the binder: the key, the rule and the mark.
pub fn explain(
    proto: PayloadProto,
    payload: &[u8],
    table: &Table,
) -> Result<Explained, ExplainError> {
    let name = match proto {
        PayloadProto::Http => "HTTP",
        PayloadProto::Tls => "TLS",
        PayloadProto::Icp => "ICP",
    };
    let reject = |r: crate::proto::Reject| ExplainError::Invalid {
        proto: name,
        reason: r.0,
    };
    let incomplete = ExplainError::Incomplete {
        proto: name,
        len: payload.len(),
    };
    match proto {
        PayloadProto::Http => match http::parse_request(payload) {
            Parsed::Key(req) => Ok(decide_http(&req, table)),
            Parsed::NotThisProtocol(r) => Err(reject(r)),
            Parsed::NeedMore => Err(incomplete),
        },
        PayloadProto::Tls => match tls::parse_client_hello(payload) {
            Parsed::Key(hello) => Ok(decide_tls(&hello, table)),
            Parsed::NotThisProtocol(r) => Err(reject(r)),
            Parsed::NeedMore => Err(incomplete),
        },
        PayloadProto::Icp => match icp::parse(payload) {
            Parsed::Key(msg) => decide_icp(&msg, table),
            Parsed::NotThisProtocol(r) => Err(reject(r)),
            Parsed::NeedMore => Err(incomplete),
        },
    }
}

fn named(table: &Table, rule: Option<usize>) -> Option<String> {
    rule.and_then(|i| table.rule_ids().get(i).cloned())
}

/// The decision for an HTTP request (the packet path: the binder; no key is built).
pub fn decision_http(req: &http::HttpRequest, table: &Table) -> Decision {
    let canonical = req
        .host
        .as_deref()
        .map(|h| url::canonical_http_url(h, req.port, &req.path));
    table.decide(&Subject {
        proto: Proto::Http,
        host: req.host.as_deref(),
        method: Some(&req.method),
        path: Some(&req.path),
        sni: None,
        url: canonical.as_deref(),
    })
}

/// Decide an HTTP request (`explain`: the same decision as the binder's, with the key).
pub fn decide_http(req: &http::HttpRequest, table: &Table) -> Explained {
    let d = decision_http(req, table);
    Explained {
        rule: named(table, d.rule),
        mark: d.mark,
        key: Key::Http {
            method: req.method.clone(),
            host: req.host.clone(),
            path: req.path.clone(),
        },
    }
}

/// The decision for a TLS ClientHello (the packet path: the binder).
pub fn decision_tls(hello: &tls::ClientHello, table: &Table) -> Decision {
    table.decide(&Subject {
        proto: Proto::Tls,
        host: None,
        method: None,
        path: None,
        sni: hello.sni.as_deref(),
        url: hello.sni.as_deref(),
    })
}

/// Decide a TLS ClientHello (`explain`: the same decision as the binder's, with the key).
pub fn decide_tls(hello: &tls::ClientHello, table: &Table) -> Explained {
    let d = decision_tls(hello, table);
    Explained {
        rule: named(table, d.rule),
        mark: d.mark,
        key: Key::Tls {
            sni: hello.sni.clone(),
        },
    }
}

/// Decide an ICP query URL (the packet path: no allocation beyond URL canonicalisation).
pub fn decide_icp_url(qurl: &str, table: &Table) -> Decision {
    let parts = url::split_icp_url(qurl);
    table.decide(&Subject {
        proto: Proto::Icp,
        host: parts.as_ref().map(|p| p.host.as_str()),
        method: None,
        path: parts.as_ref().map(|p| p.path.as_str()),
        sni: None,
        url: Some(parts.as_ref().map_or(qurl, |p| p.canonical.as_str())),
    })
}

/// Decide an ICP message (queries only).
pub fn decide_icp(msg: &icp::IcpMessage, table: &Table) -> Result<Explained, ExplainError> {
    let icp::IcpBody::Query { url: qurl, .. } = &msg.body else {
        return Err(ExplainError::NotAQuery(format!("{:?}", msg.opcode)));
    };
    let d = decide_icp_url(qurl, table);
    Ok(Explained {
        rule: named(table, d.rule),
        mark: d.mark,
        key: Key::Icp {
            opcode: format!("{:?}", msg.opcode),
            reqnum: msg.reqnum,
            url: qurl.clone(),
        },
    })
}

/// The verdict thread's view of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// The mark to set.
    pub mark: u32,
    /// The matching rule, if any.
    pub rule: Option<usize>,
    /// How it ended.
    pub outcome: Outcome,
    /// For unparseable packets: why.
    pub reason: Option<&'static str>,
}

/// Classify one queued datagram (an L3 packet): ICP queries by their URL; anything that is not a
/// well-formed ICP query gets the default mark and a reason.
pub fn datagram(packet: &[u8], table: &Table) -> Classified {
    let default = |reason| Classified {
        mark: table.default_mark(),
        rule: None,
        outcome: Outcome::Unparseable,
        reason: Some(reason),
    };
    let pkt = match ip::parse_packet(packet) {
        Ok(p) => p,
        Err(e) => return default(e.as_counter_label()),
    };
    if !matches!(pkt.transport, ip::Transport::Udp) {
        return default("not udp");
    }
    match icp::parse(pkt.payload) {
        Parsed::Key(icp::IcpMessage {
            body: icp::IcpBody::Query { url: qurl, .. },
            ..
        }) => {
            let d = decide_icp_url(&qurl, table);
            Classified {
                mark: d.mark,
                rule: d.rule,
                outcome: if d.rule.is_some() {
                    Outcome::Marked
                } else {
                    Outcome::Default
                },
                reason: None,
            }
        }
        Parsed::Key(_) => default("icp not a query"),
        Parsed::NotThisProtocol(r) => default(r.0),
        // A datagram is complete: a message shorter than its length field is malformed.
        Parsed::NeedMore => default("icp truncated"),
    }
}
