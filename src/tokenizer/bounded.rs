//! Chat templates rendered with bounded memory.
//!
//! minijinja's fuel bounds the instructions a render executes, not the sizes of the values it
//! makes: `{% set ns.s = ns.s ~ ns.s %}` forty times is 2^40 bytes after 200 instructions, and
//! a list doubled the same way is joined into one string by a single filter call. So a
//! template is run from a copy of its compiled instructions with checks added (through
//! minijinja's `unstable_machinery`):
//!
//! - after every instruction that makes a new value (`+`, `*`, `~`, filter, method, function and
//!   macro calls), the value's size is measured: strings by their bytes, lists and maps by the
//!   sizes of their items (at most [`MAX_ITEMS`] items and [`MAX_DEPTH`] levels looked at) and
//!   refused past [`MAX_VALUE_BYTES`];
//! - every emitted value and literal is counted against [`MAX_EMITTED_BYTES`] (output captured
//!   by a macro or `{% set %}` block counts again when it is emitted);
//! - filters and methods whose output can be far larger than their inputs are checked before
//!   they run (`join`, `replace`, `indent`, `center`-like padding in `format`).
//!
//! A refused render is an [`ErrorKind::InvalidOperation`] naming the limit; the tokenizer turns
//! it into [`crate::Error::Tokenizer`]. `include`, `import` and `extends` are refused (HF chat
//! templates are single strings; an included template would run unchecked).

use minijinja::machinery::{self, Instruction, Instructions};
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};
use std::cell::Cell;
use std::collections::BTreeMap;

/// Bytes one value made during a render may have.
pub const MAX_VALUE_BYTES: usize = super::MAX_RENDER_BYTES;

/// Bytes a render may emit in all (captured output counts again when emitted).
pub const MAX_EMITTED_BYTES: usize = 4 * super::MAX_RENDER_BYTES;

/// Items (list entries, map keys and values, over all levels) one measured value may have.
pub const MAX_ITEMS: usize = 200_000;

/// Nesting one measured value may have.
pub const MAX_DEPTH: u32 = 64;

const CHECK: &str = "__kjarni_checked";
const EMIT: &str = "__kjarni_emitted";

thread_local! {
    /// Bytes emitted by the render in progress on this thread.
    static EMITTED: Cell<usize> = const { Cell::new(0) };
}

fn refuse(detail: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, detail)
}

/// The approximate size of `v` in bytes; `items` counts the items looked at.
fn measure(v: &Value, depth: u32, items: &mut usize) -> Result<usize, Error> {
    *items += 1;
    if *items > MAX_ITEMS {
        return Err(refuse(format!(
            "a value with more than {MAX_ITEMS} items (the template's limit)"
        )));
    }
    match v.kind() {
        ValueKind::String => Ok(v.as_str().map_or(0, str::len)),
        ValueKind::Bytes => Ok(v.as_bytes().map_or(0, <[u8]>::len)),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            if depth >= MAX_DEPTH {
                return Err(refuse(format!(
                    "a value nested more than {MAX_DEPTH} levels deep (the template's limit)"
                )));
            }
            if let Some(n) = v.len() {
                if n > MAX_ITEMS {
                    return Err(refuse(format!(
                        "a value with {n} items (the template's limit is {MAX_ITEMS})"
                    )));
                }
            }
            let mut total = 0usize;
            let Ok(iter) = v.try_iter() else { return Ok(8) };
            for item in iter.take(MAX_ITEMS + 1) {
                total = total.saturating_add(1 + measure(&item, depth + 1, items)?);
                if v.kind() == ValueKind::Map {
                    if let Ok(value) = v.get_item(&item) {
                        total = total.saturating_add(measure(&value, depth + 1, items)?);
                    }
                }
                if total > MAX_VALUE_BYTES {
                    break;
                }
            }
            Ok(total)
        }
        _ => Ok(8),
    }
}

fn size_of(v: &Value) -> Result<usize, Error> {
    measure(v, 0, &mut 0)
}

/// `v` when it is within [`MAX_VALUE_BYTES`].
fn checked(v: Value) -> Result<Value, Error> {
    let n = size_of(&v)?;
    if n > MAX_VALUE_BYTES {
        return Err(refuse(format!(
            "a value of {n} bytes (the template's limit is {MAX_VALUE_BYTES})"
        )));
    }
    Ok(v)
}

/// `v`, counted as emitted.
fn emitted(v: Value) -> Result<Value, Error> {
    let n = match v.as_str() {
        Some(s) => s.len(),
        None => size_of(&v)?,
    };
    let total = EMITTED.with(|e| {
        let t = e.get().saturating_add(n);
        e.set(t);
        t
    });
    if total > MAX_EMITTED_BYTES {
        return Err(refuse(format!("the output is over the {MAX_EMITTED_BYTES}-byte limit")));
    }
    Ok(v)
}

/// Refuse a `join` whose result would be too large (measured before joining).
fn join_bound(value: &Value, joiner: Option<&Value>) -> Result<(), Error> {
    let items = value.len().unwrap_or(0);
    let sep = joiner.and_then(Value::as_str).map_or(0, str::len);
    let n = size_of(value)?.saturating_add(items.saturating_mul(sep));
    if n > MAX_VALUE_BYTES {
        return Err(refuse(format!(
            "join of {n} bytes (the template's limit is {MAX_VALUE_BYTES})"
        )));
    }
    Ok(())
}

/// Refuse a `replace` whose result would be too large.
fn replace_bound(s: &str, old: &Value, new: &Value) -> Result<(), Error> {
    let (Some(old), Some(new)) = (old.as_str(), new.as_str()) else {
        return Ok(());
    };
    let hits = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let n = s.len().saturating_add(hits.saturating_mul(new.len()));
    if n > MAX_VALUE_BYTES {
        return Err(refuse(format!(
            "replace making {n} bytes (the template's limit is {MAX_VALUE_BYTES})"
        )));
    }
    Ok(())
}

/// Refuse a width (padding of `indent`, `format`) beyond [`MAX_VALUE_BYTES`].
fn width_bound(what: &str, width: usize) -> Result<(), Error> {
    if width > MAX_VALUE_BYTES {
        return Err(refuse(format!(
            "{what} width {width} (the template's limit is {MAX_VALUE_BYTES})"
        )));
    }
    Ok(())
}

/// Digits of printf / str.format widths in `fmt` (e.g. `%99999999s`, `{:>99999999}`) bounded.
fn format_bound(fmt: &str) -> Result<(), Error> {
    let mut digits = String::new();
    for c in fmt.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if !digits.is_empty() {
            let w = digits.parse::<usize>().unwrap_or(usize::MAX);
            width_bound("format", w)?;
            digits.clear();
        }
    }
    Ok(())
}

/// Add the checking functions and the bounded versions of `join`, `replace`, `indent`,
/// `format` and of the Python string methods to `env`.
pub fn install(env: &mut Environment<'static>) {
    env.add_function(CHECK, checked);
    env.add_function(EMIT, emitted);
    let join = Value::from_function(minijinja::filters::join);
    env.add_filter(
        "join",
        move |state: &State, args: Rest<Value>| -> Result<Value, Error> {
            if let Some(v) = args.first() {
                join_bound(v, args.get(1))?;
            }
            checked(join.call(state, &args[..])?)
        },
    );
    let replace = Value::from_function(minijinja::filters::replace);
    env.add_filter(
        "replace",
        move |state: &State, args: Rest<Value>| -> Result<Value, Error> {
            if let (Some(s), Some(old), Some(new)) = (args.first().and_then(Value::as_str), args.get(1), args.get(2)) {
                replace_bound(s, old, new)?;
            }
            checked(replace.call(state, &args[..])?)
        },
    );
    let indent = Value::from_function(minijinja::filters::indent);
    env.add_filter(
        "indent",
        move |state: &State, args: Rest<Value>| -> Result<Value, Error> {
            if let Some(w) = args.get(1) {
                let width = w.as_usize().or_else(|| w.as_str().map(str::len)).unwrap_or(0);
                width_bound("indent", width)?;
                let lines = args.first().and_then(Value::as_str).map_or(0, |s| s.lines().count());
                width_bound("indent", width.saturating_mul(lines))?;
            }
            checked(indent.call(state, &args[..])?)
        },
    );
    let format = Value::from_function(minijinja::filters::format);
    env.add_filter(
        "format",
        move |state: &State, args: Rest<Value>| -> Result<Value, Error> {
            if let Some(f) = args.first().and_then(Value::as_str) {
                format_bound(f)?;
            }
            checked(format.call(state, &args[..])?)
        },
    );
    env.set_unknown_method_callback(|state: &State, value: &Value, method: &str, args: &[Value]| {
        if let Some(s) = value.as_str() {
            match (method, args) {
                ("replace", [old, new, ..]) => replace_bound(s, old, new)?,
                ("join", [items, ..]) => join_bound(items, Some(value))?,
                ("format", _) => format_bound(s)?,
                _ => {}
            }
        }
        checked(minijinja_contrib::pycompat::unknown_method_callback(
            state, value, method, args,
        )?)
    });
}

/// `instructions` with the checks added (see the module docs); jump targets moved.
fn patch<'s>(old: &Instructions<'s>) -> Result<Instructions<'s>, Error> {
    let n = old.len();
    let group = |i: &Instruction<'_>| -> u32 {
        match i {
            Instruction::EmitRaw(_) => 3,
            Instruction::Emit
            | Instruction::Add
            | Instruction::Mul
            | Instruction::StringConcat
            | Instruction::ApplyFilter(..)
            | Instruction::CallMethod(..)
            | Instruction::CallFunction(..)
            | Instruction::CallObject(..) => 2,
            _ => 1,
        }
    };
    let mut start = Vec::with_capacity(n + 1);
    let mut pos = 0u32;
    for i in 0..n {
        start.push(pos);
        pos += old.get(i as u32).map_or(1, group);
    }
    start.push(pos);
    let to = |t: &u32| -> Result<u32, Error> {
        start
            .get(*t as usize)
            .copied()
            .ok_or_else(|| refuse(format!("jump target {t} out of range")))
    };
    let mut new = Instructions::new(old.name(), old.source());
    for i in 0..n as u32 {
        let Some(instr) = old.get(i) else { break };
        let span = old.get_span(i);
        let line = old.get_line(i);
        let mut add = |ins: Instruction<'s>| {
            match (span, line) {
                (Some(s), _) => new.add_with_span(ins, s),
                (None, Some(l)) => new.add_with_line(ins, u16::try_from(l).unwrap_or(u16::MAX)),
                (None, None) => new.add(ins),
            };
        };
        match instr {
            Instruction::EmitRaw(s) => {
                add(Instruction::LoadConst(Value::from_safe_string((*s).to_string())));
                add(Instruction::CallFunction(EMIT, Some(1)));
                add(Instruction::Emit);
            }
            Instruction::Emit => {
                add(Instruction::CallFunction(EMIT, Some(1)));
                add(Instruction::Emit);
            }
            Instruction::Jump(t) => add(Instruction::Jump(to(t)?)),
            Instruction::JumpIfFalse(t) => add(Instruction::JumpIfFalse(to(t)?)),
            Instruction::JumpIfFalseOrPop(t) => add(Instruction::JumpIfFalseOrPop(to(t)?)),
            Instruction::JumpIfTrueOrPop(t) => add(Instruction::JumpIfTrueOrPop(to(t)?)),
            Instruction::Iterate(t) => add(Instruction::Iterate(to(t)?)),
            Instruction::BuildMacro(name, t, flags) => add(Instruction::BuildMacro(name, to(t)?, *flags)),
            Instruction::Include(_) | Instruction::LoadBlocks => {
                return Err(refuse(
                    "include, import and extends are not supported in chat templates".into(),
                ))
            }
            Instruction::Add
            | Instruction::Mul
            | Instruction::StringConcat
            | Instruction::ApplyFilter(..)
            | Instruction::CallMethod(..)
            | Instruction::CallFunction(..)
            | Instruction::CallObject(..) => {
                add(instr.clone());
                add(Instruction::CallFunction(CHECK, Some(1)));
            }
            other => add(other.clone()),
        }
    }
    Ok(new)
}

/// Render template `name` of `env` (which had [`install`]) with `ctx`, every value and the
/// output bounded. The output is at most [`MAX_EMITTED_BYTES`].
pub fn render(env: &Environment<'static>, name: &str, ctx: Value) -> Result<String, Error> {
    let template = env.get_template(name)?;
    let compiled = machinery::get_compiled_template(&template);
    let root = patch(&compiled.instructions)?;
    let mut blocks = BTreeMap::new();
    for (k, v) in &compiled.blocks {
        blocks.insert(*k, patch(v)?);
    }
    EMITTED.with(|e| e.set(0));
    let mut out = String::new();
    let r = machinery::Vm::new(env)
        .eval(
            &root,
            ctx,
            &blocks,
            &mut machinery::make_string_output(&mut out),
            compiled.initial_auto_escape,
        )
        .map(|_| ());
    EMITTED.with(|e| e.set(0));
    r.map(|()| out)
}
