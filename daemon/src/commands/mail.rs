//! `mail.send`: an email over the SMTP server in `[smtp]`.

use std::time::Duration;

use hookd_shared::Role;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use super::Ctx;
use super::{Call, Command, Kind, Output, Param};
use crate::config::StartTls;
use crate::error::Error;

pub(super) fn commands() -> Vec<Command> {
    vec![Command {
        name: "mail.send",
        description: "Send an email through the SMTP server configured in [smtp]",
        role: Some(Role::Admin),
        params: &[
            Param {
                name: "to",
                kind: Kind::Json,
                required: true,
                description: "recipient(s): an address, a comma-separated list, or a list",
            },
            Param {
                name: "subject",
                kind: Kind::String,
                required: true,
                description: "the subject line",
            },
            Param {
                name: "message",
                kind: Kind::Json,
                required: false,
                description: "the text (default: the pipeline body); non-text values are sent as JSON",
            },
            Param {
                name: "from",
                kind: Kind::String,
                required: false,
                description: "the sender (default: [smtp] from)",
            },
        ],
        handler: |ctx, call| Box::pin(send(ctx, call)),
    }]
}

async fn send(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let cfg = ctx.config.smtp.as_ref().ok_or_else(|| {
        Error::BadRequest(
            "mail.send needs an [smtp] section in hookd's config (host, port, starttls, ...)"
                .into(),
        )
    })?;
    let p = &call.params;
    let from = p
        .str("from")
        .map(str::to_string)
        .or_else(|| cfg.from.clone())
        .ok_or_else(|| Error::InvalidParam("from is required when [smtp] has no from".into()))?;
    let to: Vec<String> = match p.json("to") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    if to.is_empty() {
        return Err(Error::InvalidParam("to needs at least one address".into()));
    }
    let text = match p.json("message").or(call.input.as_ref()) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let bad = |what: &str, v: &str, e: &dyn std::fmt::Display| {
        Error::InvalidParam(format!("{what} '{v}' is not an email address ({e})"))
    };
    let mut b = Message::builder()
        .from(from.parse().map_err(|e| bad("from", &from, &e))?)
        .subject(p.required_str("subject")?)
        .header(ContentType::TEXT_PLAIN);
    for addr in &to {
        b = b.to(addr.parse().map_err(|e| bad("to", addr, &e))?);
    }
    let email = b
        .body(text)
        .map_err(|e| Error::InvalidParam(format!("cannot build the email: {e}")))?;

    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
        .port(cfg.port)
        .timeout(Some(Duration::from_secs(30)));
    let tls = || {
        TlsParameters::new(cfg.host.clone())
            .map_err(|e| Error::Internal(format!("SMTP TLS setup for {}: {e}", cfg.host)))
    };
    t = match cfg.starttls {
        StartTls::None => t,
        StartTls::Opportunistic => t.tls(Tls::Opportunistic(tls()?)),
        StartTls::Required => t.tls(Tls::Required(tls()?)),
    };
    if let (Some(u), Some(pw)) = (&cfg.username, &cfg.password) {
        t = t.credentials(Credentials::new(u.clone(), pw.clone()));
    }
    t.build().send(email).await.map_err(|e| {
        Error::Unavailable(format!(
            "the SMTP server {}:{} refused or failed: {e}",
            cfg.host, cfg.port
        ))
    })?;
    Ok(Output::None)
}
