//! Expressions in pipeline parameters: `${…}` and `#{…}`, with PIPEFORCE's syntax, evaluated
//! by Rhai (sandboxed: no I/O, no modules, bounded operations, sizes and depth).
//!
//! PIPEFORCE expressions are SpEL-like; Rhai is close enough that a light translation suffices:
//! `'single'` strings become `"double"`, `and`/`or`/`not` become `&&`/`||`/`!`, `null` becomes
//! `()`, and `@convert.fromBase64(x)` calls the registered function `convert_fromBase64(x)`.
//! Paths (`body.a.b`), indexing (`a[0]`, `a["k"]`), comparisons, `+` concatenation and the
//! null-safe `?.` are Rhai's own. Positions in errors refer to the original text.

use base64::Engine as _;
use rhai::{Dynamic, EvalAltResult, Scope};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A problem with an expression, located in the parameter's text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at column {column} of '{text}')")]
pub struct ExprError {
    pub message: String,
    /// 1-based column in `text`.
    pub column: usize,
    pub text: String,
}

/// What calling `sleep` in an expression says.
const NO_SLEEP: &str = "sleep() is not available in expressions (it would block hookd)";
/// Longest one expression may run.
const EVAL_WALL: std::time::Duration = std::time::Duration::from_secs(1);
const TIMED_OUT: &str = "the expression ran longer than 1 s and was stopped";
/// Most operations one evaluation may take, closures' included.
const MAX_OPERATIONS: u64 = 100_000;
const TOO_MANY: &str = "Too many operations (an expression may take 100,000)";

thread_local! {
    /// When the evaluation running on this thread started (evaluation never yields, so it is
    /// the thread's until it returns).
    static EVAL_STARTED: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    /// The deadline of the run whose expressions this thread is evaluating (see `until`).
    static RUN_DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    /// Operations of the evaluation running on this thread. Rhai counts a closure's operations
    /// (`map`, `filter`, ... calling one per item) apart from its caller's, starting again at
    /// the caller's count each call, so neither its limit nor its count bounds such work: this
    /// does, counting every operation once.
    static EVAL_OPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs `f` (which evaluates expressions, synchronously) so that any evaluation still running
/// at `deadline` stops there: a run's time limit covers its expressions too.
pub fn until<R>(deadline: std::time::Instant, f: impl FnOnce() -> R) -> R {
    let before = RUN_DEADLINE.with(|d| d.replace(Some(deadline)));
    let out = f();
    RUN_DEADLINE.with(|d| d.set(before));
    out
}

/// The sandboxed engine; compile once, evaluate many times, from any thread.
pub struct Engine {
    rhai: rhai::Engine,
}

impl Default for Engine {
    fn default() -> Self {
        let mut e = rhai::Engine::new();
        e.set_max_operations(MAX_OPERATIONS)
            .set_max_string_size(16 << 20)
            .set_max_array_size(100_000)
            .set_max_map_size(100_000)
            .set_max_expr_depths(64, 32)
            .set_max_call_levels(16)
            .set_fail_on_invalid_map_property(false);
        e.on_print(|_| {});
        e.on_debug(|_, _, _| {});
        e.disable_symbol("eval");
        // Rhai's core package has `sleep`, which blocks the thread evaluating: a run's thread
        // or, for pipeline.run, a thread serving connections. Registered functions shadow the
        // package's, so these make any call to it an error.
        e.register_fn("sleep", |_: f64| -> Result<(), Box<EvalAltResult>> {
            Err(NO_SLEEP.into())
        });
        e.register_fn("sleep", |_: i64| -> Result<(), Box<EvalAltResult>> {
            Err(NO_SLEEP.into())
        });
        // The operation limit bounds the work, this the time: an evaluation still running
        // after EVAL_WALL (slow built-ins on large values, say), or past its run's deadline, is
        // stopped.
        e.on_progress(|_| {
            let ops = EVAL_OPS.with(|n| {
                n.set(n.get() + 1);
                n.get()
            });
            if ops > MAX_OPERATIONS {
                return Some(Dynamic::from(TOO_MANY));
            }
            if !ops.is_multiple_of(256) {
                return None;
            }
            let started = EVAL_STARTED.with(std::cell::Cell::get)?;
            let past_run = RUN_DEADLINE
                .with(std::cell::Cell::get)
                .is_some_and(|d| std::time::Instant::now() >= d);
            (past_run || started.elapsed() > EVAL_WALL).then(|| Dynamic::from(TIMED_OUT))
        });
        e.register_fn(
            "convert_fromBase64",
            |s: &str| -> Result<String, Box<EvalAltResult>> {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| format!("@convert.fromBase64: not base64 ({e})"))?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            },
        );
        e.register_fn("convert_toBase64", |d: Dynamic| {
            base64::engine::general_purpose::STANDARD.encode(text_of(&d))
        });
        e.register_fn("convert_toJson", |d: Dynamic| {
            serde_json::to_string(&to_json(d)).unwrap_or_default()
        });
        e.register_fn(
            "convert_fromJson",
            |s: &str| -> Result<Dynamic, Box<EvalAltResult>> {
                let v: Value =
                    serde_json::from_str(s).map_err(|e| format!("@convert.fromJson: {e}"))?;
                rhai::serde::to_dynamic(v)
            },
        );
        e.register_fn("date_now", || crate::clock::rfc3339(crate::clock::now_ms()));
        e.register_fn("hash_sha256", |d: Dynamic| {
            hex::encode(Sha256::digest(text_of(&d).as_bytes()))
        });
        e.register_fn("text_lower", |s: &str| s.to_lowercase());
        e.register_fn("text_upper", |s: &str| s.to_uppercase());
        Engine { rhai: e }
    }
}

/// Strings as they are; anything else as JSON.
fn text_of(d: &Dynamic) -> String {
    if d.is_string() {
        d.clone().into_string().unwrap_or_default()
    } else {
        serde_json::to_string(&to_json(d.clone())).unwrap_or_default()
    }
}

fn to_json(d: Dynamic) -> Value {
    rhai::serde::from_dynamic(&d).unwrap_or(Value::Null)
}

/// What expressions can read.
pub struct Context<'a> {
    pub body: &'a Value,
    pub vars: &'a Map<String, Value>,
    pub headers: &'a Map<String, Value>,
}

/// A parameter value with its expressions compiled.
#[derive(Clone)]
pub enum Template {
    /// Exactly one expression: the value keeps its type.
    Single(Compiled),
    /// Text with expressions inside: always a string.
    Mixed(Vec<Piece>),
}

/// Part of a mixed template.
#[derive(Clone)]
pub enum Piece {
    Text(String),
    Expr(Compiled),
}

/// One compiled expression.
#[derive(Clone)]
pub struct Compiled {
    ast: rhai::AST,
    /// The original text, for error messages.
    source: String,
}

impl Engine {
    /// Compiles every `${…}`/`#{…}` in `text`; `Ok(None)` when there is none.
    pub fn template(&self, text: &str) -> Result<Option<Template>, ExprError> {
        let spans = find_expressions(text)?;
        if spans.is_empty() {
            return Ok(None);
        }
        let compile = |(start, end): (usize, usize)| -> Result<Compiled, ExprError> {
            let inner = &text[start + 2..end];
            let (translated, map) = translate(inner);
            let ast = self.rhai.compile_expression(&translated).map_err(|e| {
                let col = e.1.position().unwrap_or(1);
                let orig = map.get(col.saturating_sub(1)).copied().unwrap_or(0);
                ExprError {
                    message: format!("invalid expression: {}", e.0),
                    column: start + 3 + orig,
                    text: text.to_string(),
                }
            })?;
            Ok(Compiled {
                ast,
                source: text[start..=end].to_string(),
            })
        };
        if spans.len() == 1 && spans[0] == (0, text.len() - 1) {
            return Ok(Some(Template::Single(compile(spans[0])?)));
        }
        let mut pieces = Vec::new();
        let mut at = 0;
        for span in spans {
            if span.0 > at {
                pieces.push(Piece::Text(text[at..span.0].to_string()));
            }
            pieces.push(Piece::Expr(compile(span)?));
            at = span.1 + 1;
        }
        if at < text.len() {
            pieces.push(Piece::Text(text[at..].to_string()));
        }
        Ok(Some(Template::Mixed(pieces)))
    }

    /// Evaluates a template against `ctx`.
    pub fn eval(&self, t: &Template, ctx: &Context<'_>) -> Result<Value, String> {
        let mut scope = self.scope(ctx)?;
        match t {
            Template::Single(c) => self.run(c, &mut scope),
            Template::Mixed(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(s) => out.push_str(s),
                        Piece::Expr(c) => match self.run(c, &mut scope)? {
                            Value::String(s) => out.push_str(&s),
                            Value::Null => {}
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Ok(Value::String(out))
            }
        }
    }

    /// Evaluates a template as a condition: `true`, or a non-empty, non-"false" value.
    pub fn truthy(&self, t: &Template, ctx: &Context<'_>) -> Result<bool, String> {
        Ok(match self.eval(t, ctx)? {
            Value::Bool(b) => b,
            Value::Null => false,
            Value::String(s) => !(s.is_empty() || s == "false"),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        })
    }

    fn scope(&self, ctx: &Context<'_>) -> Result<Scope<'static>, String> {
        let mut scope = Scope::new();
        let conv = |v: &Value| rhai::serde::to_dynamic(v).map_err(|e| e.to_string());
        scope.push_constant_dynamic("body", conv(ctx.body)?);
        scope.push_constant_dynamic("vars", conv(&Value::Object(ctx.vars.clone()))?);
        scope.push_constant_dynamic("headers", conv(&Value::Object(ctx.headers.clone()))?);
        Ok(scope)
    }

    fn run(&self, c: &Compiled, scope: &mut Scope<'_>) -> Result<Value, String> {
        EVAL_STARTED.with(|s| s.set(Some(std::time::Instant::now())));
        EVAL_OPS.with(|n| n.set(0));
        let out = self.rhai.eval_ast_with_scope::<Dynamic>(scope, &c.ast);
        EVAL_STARTED.with(|s| s.set(None));
        out.map(to_json).map_err(|e| match terminated(&e) {
            Some(why) => format!("{} failed: {why}", c.source),
            None => format!("{} failed: {e}", c.source),
        })
    }
}

/// Why the progress callback stopped an evaluation, if it did (inside a closure the stop
/// arrives wrapped in the calls it passed through).
fn terminated(e: &EvalAltResult) -> Option<&'static str> {
    match e {
        EvalAltResult::ErrorTerminated(why, _) => {
            Some(if why.clone().into_string().as_deref() == Ok(TOO_MANY) {
                TOO_MANY
            } else {
                TIMED_OUT
            })
        }
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => terminated(inner),
        _ => None,
    }
}

/// (start, end) byte offsets of each `${…}` / `#{…}`, `end` at the closing brace.
fn find_expressions(text: &str) -> Result<Vec<(usize, usize)>, ExprError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if (b[i] == b'$' || b[i] == b'#') && b[i + 1] == b'{' {
            let start = i;
            let mut depth = 0usize;
            let mut quote: Option<u8> = None;
            let mut j = i + 1;
            let mut end = None;
            while j < b.len() {
                let c = b[j];
                match quote {
                    Some(_) if c == b'\\' => j += 1,
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None => match c {
                        b'\'' | b'"' => quote = Some(c),
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    },
                }
                j += 1;
            }
            let Some(end) = end else {
                return Err(ExprError {
                    message: format!("'{}{{' is never closed with '}}'", b[i] as char),
                    column: start + 1,
                    text: text.to_string(),
                });
            };
            out.push((start, end));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    Ok(out)
}

/// PIPEFORCE syntax to Rhai, with a map from each output byte to its input byte.
fn translate(src: &str) -> (String, Vec<usize>) {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 8);
    let mut map = Vec::with_capacity(src.len() + 8);
    let push = |out: &mut String, map: &mut Vec<usize>, s: &str, at: usize| {
        out.push_str(s);
        map.extend(std::iter::repeat_n(at, s.len()));
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' || c == b'"' {
            // A string literal: always emitted double-quoted.
            let q = c;
            push(&mut out, &mut map, "\"", i);
            i += 1;
            loop {
                if i >= b.len() {
                    break;
                }
                if b[i] == q {
                    // SpEL escapes a quote by doubling it: 'it''s'.
                    if q == b'\'' && i + 1 < b.len() && b[i + 1] == b'\'' {
                        push(&mut out, &mut map, "'", i);
                        i += 2;
                        continue;
                    }
                    break;
                }
                if b[i] == b'\\' && i + 1 < b.len() {
                    push(&mut out, &mut map, &src[i..i + 2], i);
                    i += 2;
                    continue;
                }
                if b[i] == b'"' {
                    push(&mut out, &mut map, "\\\"", i);
                } else {
                    let ch_len = src[i..].chars().next().map_or(1, char::len_utf8);
                    push(&mut out, &mut map, &src[i..i + ch_len], i);
                    i += ch_len;
                    continue;
                }
                i += 1;
            }
            push(&mut out, &mut map, "\"", i.min(b.len().saturating_sub(1)));
            i += 1;
        } else if c == b'@' {
            // @ns.fn( -> ns_fn(
            let start = i;
            i += 1;
            let ident_end = |from: usize| {
                let mut k = from;
                while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
                    k += 1;
                }
                k
            };
            let ns_end = ident_end(i);
            if ns_end < b.len() && b[ns_end] == b'.' {
                let fn_end = ident_end(ns_end + 1);
                let name = format!("{}_{}", &src[i..ns_end], &src[ns_end + 1..fn_end]);
                push(&mut out, &mut map, &name, start);
                i = fn_end;
            } else {
                push(&mut out, &mut map, "@", start);
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            // Only whole words, and not property names after a dot.
            let after_dot = start > 0 && b[start - 1] == b'.';
            let word = &src[start..i];
            let replaced = match word {
                "and" if !after_dot => "&&",
                "or" if !after_dot => "||",
                "not" if !after_dot => "!",
                "null" if !after_dot => "()",
                w => w,
            };
            push(&mut out, &mut map, replaced, start);
        } else {
            let ch_len = src[i..].chars().next().map_or(1, char::len_utf8);
            push(&mut out, &mut map, &src[i..i + ch_len], i);
            i += ch_len;
        }
    }
    (out, map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, body: Value) -> Result<Value, String> {
        let e = Engine::default();
        let t = e
            .template(expr)
            .map_err(|e| e.to_string())?
            .expect("has an expression");
        let (vars, headers) = (Map::from_iter([("n".to_string(), json!(3))]), Map::new());
        e.eval(
            &t,
            &Context {
                body: &body,
                vars: &vars,
                headers: &headers,
            },
        )
    }

    /// `sleep` would hold the thread evaluating (issue 29): it is an error at once, in any form.
    #[test]
    fn sleep_is_refused_without_sleeping() {
        let started = std::time::Instant::now();
        for expr in ["${sleep(20)}", "${sleep(20.0)}", "x ${sleep(1)} y"] {
            let e = eval(expr, json!({})).expect_err(expr);
            assert!(e.contains("sleep() is not available"), "{expr}: {e}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    /// Work is bounded by operations, and still stops with a clear error.
    #[test]
    fn endless_loops_stop_with_an_error() {
        let big = json!({"n": vec![1; 50_000]});
        let r = eval(
            "${body.n.map(|x| [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(|y| y * x).len())}",
            big,
        );
        let Err(e) = r else {
            panic!("not stopped by the operation limit");
        };
        assert!(e.contains("Too many operations"), "{e}");
    }

    #[test]
    fn paths_types_and_operators() {
        let body =
            json!({"payload": {"json": {"lead": {"name": "Ada", "tags": ["a", "b"], "score": 7}}}});
        assert_eq!(
            eval("${body.payload.json.lead.name}", body.clone()),
            Ok(json!("Ada"))
        );
        assert_eq!(
            eval("${body.payload.json.lead}", body.clone()),
            Ok(json!({"name": "Ada", "tags": ["a", "b"], "score": 7}))
        );
        assert_eq!(
            eval("${body.payload.json.lead.tags[1]}", body.clone()),
            Ok(json!("b"))
        );
        assert_eq!(
            eval("${body.payload.json.lead[\"name\"]}", body.clone()),
            Ok(json!("Ada"))
        );
        assert_eq!(
            eval(
                "${body.payload.json.lead.score > 5 && vars.n == 3}",
                body.clone()
            ),
            Ok(json!(true))
        );
        assert_eq!(
            eval(
                "#{body.payload.json.lead.name == 'Ada' and not (vars.n != 3)}",
                body.clone()
            ),
            Ok(json!(true))
        );
        assert_eq!(
            eval("${body.payload.json.lead.score < 5 or false}", body.clone()),
            Ok(json!(false))
        );
        assert_eq!(
            eval(
                "New lead: ${body.payload.json.lead.name} (${vars.n})",
                body.clone()
            ),
            Ok(json!("New lead: Ada (3)"))
        );
        assert_eq!(eval("${'it''s'}", json!({})), Ok(json!("it's")));
        assert_eq!(eval("${'say \"hi\"'}", json!({})), Ok(json!("say \"hi\"")));
        assert_eq!(eval("${body.missing == null}", json!({})), Ok(json!(true)));
        assert_eq!(eval("${body.missing?.deeper}", json!({})), Ok(Value::Null));
        assert!(
            eval("${body.missing.deeper}", json!({})).is_err(),
            "plain . on null fails"
        );
    }

    #[test]
    fn utility_functions() {
        assert_eq!(
            eval("${@convert.fromBase64('aGk=')}", json!({})),
            Ok(json!("hi"))
        );
        assert_eq!(
            eval("${@convert.toBase64('hi')}", json!({})),
            Ok(json!("aGk="))
        );
        assert_eq!(
            eval("${@convert.fromJson('{\"a\":[1]}').a[0]}", json!({})),
            Ok(json!(1))
        );
        assert_eq!(
            eval("${@convert.toJson(body)}", json!({"a": 1})),
            Ok(json!("{\"a\":1}"))
        );
        assert_eq!(
            eval("${@text.upper('x') + @text.lower('Y')}", json!({})),
            Ok(json!("Xy"))
        );
        assert_eq!(
            eval("${@hash.sha256('abc')}", json!({})),
            Ok(json!(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
        let now = eval("${@date.now()}", json!({})).expect("now");
        assert!(now.as_str().is_some_and(|s| s.ends_with('Z')));
    }

    #[test]
    fn errors_name_the_position_and_text_without_expressions_is_left_alone() {
        let e = Engine::default();
        assert!(
            e.template("plain text, {braces} and $ signs")
                .expect("ok")
                .is_none()
        );
        let err = e.template("x ${body.a +} y").err().expect("syntax error");
        assert_eq!(err.text, "x ${body.a +} y");
        assert!(err.column >= 3 && err.column <= 13, "{err}");
        let err = e.template("${body.a").err().expect("unclosed");
        assert!(err.message.contains("never closed"), "{err}");
        // Runaway work is bounded by the sandbox.
        let t = e
            .template("${\"x\".pad(100000000, \"y\")}")
            .expect("compiles")
            .expect("expr");
        let (m, b) = (Map::new(), Value::Null);
        assert!(
            e.eval(
                &t,
                &Context {
                    body: &b,
                    vars: &m,
                    headers: &m
                }
            )
            .is_err()
        );
    }
}
