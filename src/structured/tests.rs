//! Tool-call formats with a tiny byte-level tokenizer and Qwen2.5-Instruct's chat template
//! (tests/fixtures/templates): detection, the rendered prompt, the call grammar, parsing, the
//! round trip of `tool_calls` / `tool` messages, and the order of request errors.

use super::*;
use crate::tokenizer::ChatMessage;
use serde_json::{json, Value};

const QWEN25: &str = include_str!("../../tests/fixtures/templates/qwen2.5-instruct.jinja");

/// A ChatML-style template without tools (as SmolLM2's).
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The parts of Llama 3.1's template that define its custom-tool format.
const LLAMA31_PART: &str = r#"{%- if tools is not none and not tools_in_user_message %}{%- for t in tools %}{{- t | tojson(indent=4) }}{%- endfor %}{%- endif %}
{%- if builtin_tools is defined or tool_call is defined %}<|python_tag|>{%- endif %}
{{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
{%- set tool_call = message.tool_calls[0].function %}{{- '{"name": "' + tool_call.name + '", ' }}{{- '"parameters": ' }}{{- tool_call.arguments | tojson }}"#;

/// A byte-level BPE tokenizer: ids 0-2 `<s>`, `<pad>`, `</s>`, 3-258 the bytes (GPT-2's
/// table), then ChatML's and (with `tool_tokens`) Qwen's `<tool_call>` / `</tool_call>` as added
/// tokens (not special, as in Qwen2.5's tokenizer.json). `decoder`: the decoder's JSON.
fn tokenizer(tool_tokens: bool, decoder: Value, template: &str) -> crate::tokenizer::Tokenizer {
    tokenizer_without(&[], tool_tokens, decoder, template)
}

/// [`tokenizer`] without the tokens of the bytes `missing` (their ids are holes).
fn tokenizer_without(missing: &[u8], tool_tokens: bool, decoder: Value, template: &str) -> crate::tokenizer::Tokenizer {
    let mut vocab = serde_json::Map::new();
    for (b, ch) in (0u32..).zip(crate::tokenizer::byte_level_table()) {
        if !missing.contains(&(b as u8)) {
            vocab.insert(ch.to_string(), json!(b + 3));
        }
    }
    let mut added = vec![
        ("<s>", true),
        ("<pad>", true),
        ("</s>", true),
        ("<|im_start|>", true),
        ("<|im_end|>", true),
    ];
    if tool_tokens {
        added.extend([("<tool_call>", false), ("</tool_call>", false)]);
    }
    let added: Vec<Value> = added
        .iter()
        .enumerate()
        .map(|(i, (t, special))| {
            let id = if i < 3 { i } else { 256 + i };
            vocab.insert(t.to_string(), json!(id));
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let tj = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        "post_processor": null,
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
    });
    let cfg = json!({"eos_token": "<|im_end|>", "bos_token": "<s>", "chat_template": template});
    crate::tokenizer::Tokenizer::from_bytes(
        &serde_json::to_vec(&tj).unwrap(),
        Some(&serde_json::to_vec(&cfg).unwrap()),
        None,
    )
    .unwrap()
}

fn byte_level() -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false})
}

fn qwen_like(tool_tokens: bool) -> (crate::tokenizer::Tokenizer, Vocab) {
    let tok = tokenizer(tool_tokens, byte_level(), QWEN25);
    let vocab = Vocab::new(&tok, 300, &[260]).unwrap();
    (tok, vocab)
}

fn weather() -> Vec<Tool> {
    serde_json::from_value(json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city.", "parameters":
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters":
            {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"], "additionalProperties": false}}},
    ]))
    .unwrap()
}

fn render(tok: &crate::tokenizer::Tokenizer, p: &Prepared) -> String {
    let mut ctx = p.context.clone();
    ctx["add_generation_prompt"] = json!(true);
    tok.render_template(None, ctx).unwrap()
}

#[test]
fn formats_are_detected_from_the_template() {
    assert_eq!(CallFormat::detect(Some(QWEN25)), CallFormat::Hermes);
    assert_eq!(CallFormat::detect(Some(LLAMA31_PART)), CallFormat::Llama3);
    assert_eq!(CallFormat::detect(Some(CHATML)), CallFormat::Generic);
    assert_eq!(CallFormat::detect(None), CallFormat::Generic);
    // Mentioning tool calls in prose is not a format.
    assert_eq!(
        CallFormat::detect(Some("{{ messages }} use <tool_call> tags")),
        CallFormat::Generic
    );
}

#[test]
fn qwen_template_renders_the_tools_block() {
    let (tok, vocab) = qwen_like(true);
    assert_eq!(CallFormat::of(&tok), CallFormat::Hermes);
    let msgs = [ChatMessage::new("user", "Weather in Paris?")];
    let p = prepare(&vocab, CallFormat::Hermes, &msgs, None, &weather(), &ToolChoice::Auto).unwrap();
    let text = render(&tok, &p);
    assert!(text.starts_with("<|im_start|>system\nYou are Qwen"), "{text}");
    assert!(
        text.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather of a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"], \"additionalProperties\": false}}}\n{\"type\": \"function\", \"function\": {\"name\": \"add\""),
        "{text}"
    );
    assert!(text.contains("</tools>\n\nFor each function call"), "{text}");
    assert!(
        text.ends_with("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"),
        "{text}"
    );
    assert!(!text.contains("You can call these functions"), "{text}");
    // Without tools the template's plain branch.
    let p = prepare(&vocab, CallFormat::Hermes, &msgs, None, &[], &ToolChoice::Auto).unwrap();
    assert!(!render(&tok, &p).contains("<tools>"));
}

/// The call grammar, with `<tool_call>` a token of its own (Qwen) and as plain text.
#[test]
fn hermes_grammar_accepts_a_call_and_rejects_malformed_ones() {
    for tool_tokens in [true, false] {
        let (_, vocab) = qwen_like(tool_tokens);
        assert_eq!(vocab.has_special("<tool_call>"), tool_tokens);
        let tools = weather();
        let refs: Vec<&Tool> = tools.iter().collect();
        let ok = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let bad = [
            (
                "no close marker",
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
            ),
            (
                "no markers",
                "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
            ),
            (
                "Llama's key",
                "<tool_call>\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n</tool_call>",
            ),
            (
                "unknown tool",
                "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
            ),
            (
                "bad arguments",
                "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": \"one\", \"b\": 2}}\n</tool_call>",
            ),
            ("free text", "It is sunny."),
        ];
        let check = |required: bool, text: &str| {
            let g = CallFormat::Hermes.grammar(&refs, required, |t| vocab.has_special(t));
            Constraint::from_grammar(&vocab, g, "tools")
                .unwrap()
                .accepts_text(&vocab, text)
                .unwrap()
        };
        assert!(check(true, ok), "tokens {tool_tokens}: {ok}");
        assert!(check(false, ok), "tokens {tool_tokens}: auto {ok}");
        for (what, text) in bad {
            assert!(!check(true, text), "tokens {tool_tokens}: {what} accepted: {text}");
        }
        // `auto`: free text too, but not text that starts like a call.
        assert!(check(false, "It is sunny."));
        assert!(!check(false, "<b>sunny</b>"));
        assert!(!check(false, bad[3].1));
    }
}

#[test]
fn calls_parse_from_each_format() {
    let tools = weather();
    let refs: Vec<&Tool> = tools.iter().collect();
    let c = CallFormat::Hermes
        .parse_call(
            "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>",
            &refs,
            0,
        )
        .unwrap();
    assert_eq!((c.id.as_str(), c.kind.as_str()), ("call_0", "function"));
    assert_eq!(c.function.name, "add");
    assert_eq!(
        serde_json::from_str::<Value>(&c.function.arguments).unwrap(),
        json!({"a": 1, "b": 2})
    );
    assert!(CallFormat::Hermes
        .parse_call("{\"name\": \"add\", \"arguments\": {}}", &refs, 0)
        .is_none());
    assert!(CallFormat::Hermes
        .parse_call(
            "<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>",
            &refs,
            0
        )
        .is_none());
    let c = CallFormat::Llama3
        .parse_call(
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
            &refs,
            1,
        )
        .unwrap();
    assert_eq!(
        (c.id.as_str(), c.function.arguments.as_str()),
        ("call_1", "{\"city\":\"Oslo\"}")
    );
    let c = CallFormat::Generic
        .parse_call(" {\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}} ", &refs, 0)
        .unwrap();
    assert_eq!(c.function.name, "add");
    assert!(CallFormat::Generic.parse_call("It is sunny.", &refs, 0).is_none());
    // What a format writes, it parses back.
    for f in [CallFormat::Generic, CallFormat::Hermes, CallFormat::Llama3] {
        let text = f.write_call("add", "{\"a\":1,\"b\":2}");
        let c = f.parse_call(&text, &refs, 0).unwrap();
        assert_eq!(c.function.arguments, "{\"a\":1,\"b\":2}", "{f:?}: {text}");
    }
}

/// An assistant message with `tool_calls` and the `tool` answer render through the template as
/// the model writes them (the same text the grammar constrains).
#[test]
fn tool_calls_and_tool_messages_round_trip_through_the_template() {
    let (tok, vocab) = qwen_like(true);
    let mut call = ChatMessage::new("assistant", "");
    call.tool_calls = Some(vec![ToolCall {
        id: "call_0".into(),
        kind: "function".into(),
        function: tools::FunctionCall {
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        },
    }]);
    let mut answer = ChatMessage::new("tool", "18 C, sunny");
    answer.tool_call_id = Some("call_0".into());
    let msgs = [ChatMessage::new("user", "Weather in Paris?"), call, answer];
    let p = prepare(&vocab, CallFormat::Hermes, &msgs, None, &weather(), &ToolChoice::Auto).unwrap();
    let text = render(&tok, &p);
    let written = CallFormat::Hermes.write_call("get_weather", "{\"city\":\"Paris\"}");
    assert!(
        text.contains(&format!("<|im_start|>assistant\n{written}<|im_end|>\n")),
        "{text}"
    );
    assert!(
        text.ends_with(
            "<|im_start|>user\n<tool_response>\n18 C, sunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        ),
        "{text}"
    );
    // The generic format: the call is the assistant's text, the description a system message.
    let chatml = tokenizer(false, byte_level(), CHATML);
    let v = Vocab::new(&chatml, 300, &[260]).unwrap();
    let p = prepare(&v, CallFormat::Generic, &msgs, None, &weather(), &ToolChoice::Auto).unwrap();
    let text = render(&chatml, &p);
    assert!(
        text.starts_with("<|im_start|>system\nYou can call these functions:"),
        "{text}"
    );
    assert!(
        text.contains(
            "<|im_start|>assistant\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}<|im_end|>"
        ),
        "{text}"
    );
    assert!(text.contains("<|im_start|>tool\n18 C, sunny<|im_end|>"), "{text}");
}

/// A bad schema is INVALID_ARGUMENT naming its path even for a model whose tokenizer cannot be
/// constrained at all; a good one then gets UNSUPPORTED, for this model.
#[test]
fn request_errors_come_before_model_errors() {
    let wordpiece = json!({"type": "WordPiece", "prefix": "##", "cleanup": true});
    let tok = tokenizer(false, wordpiece, CHATML);
    let msgs = [ChatMessage::new("user", "hi")];
    let bad: ResponseFormat = serde_json::from_value(json!({"type": "json_schema", "json_schema": {"name": "x",
        "schema": {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true}}}}}))
    .unwrap();
    let mut cache = None;
    let e = prepare_chat(&tok, 300, &[260], &mut cache, &msgs, Some(&bad), &[], &ToolChoice::Auto).unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT", "{e}");
    assert!(
        e.to_string()
            .starts_with("response_format.json_schema.schema/properties/a/uniqueItems"),
        "{e}"
    );
    let mut tools = weather();
    tools[0].function.parameters = Some(json!({"type": "object", "not": {}}));
    let e = prepare_chat(&tok, 300, &[260], &mut cache, &msgs, None, &tools, &ToolChoice::Auto).unwrap_err();
    assert!(e.to_string().starts_with("tools[0].function.parameters/not"), "{e}");
    let good = ResponseFormat::JsonObject;
    let e = prepare_chat(
        &tok,
        300,
        &[260],
        &mut cache,
        &msgs,
        Some(&good),
        &[],
        &ToolChoice::Auto,
    )
    .unwrap_err();
    assert_eq!(e.code(), "UNSUPPORTED", "{e}");
    assert!(e.to_string().contains("not supported for this model"), "{e}");
    assert!(!e.to_string().contains("device"), "{e}");
    // Unconstrained requests need no vocabulary.
    let p = prepare_chat(&tok, 300, &[260], &mut cache, &msgs, None, &[], &ToolChoice::Auto).unwrap();
    assert!(p.constraint.is_none() && cache.is_none());
}

#[test]
fn llama3_grammar_uses_parameters() {
    let chatml = tokenizer(false, byte_level(), CHATML);
    let vocab = Vocab::new(&chatml, 300, &[260]).unwrap();
    let tools = weather();
    let refs: Vec<&Tool> = tools.iter().collect();
    let check = |required: bool, text: &str| {
        let g = CallFormat::Llama3.grammar(&refs, required, |t| vocab.has_special(t));
        Constraint::from_grammar(&vocab, g, "tools")
            .unwrap()
            .accepts_text(&vocab, text)
            .unwrap()
    };
    let ok = "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}";
    assert!(check(true, ok) && check(false, ok));
    assert!(!check(true, "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}"));
    assert!(check(false, "Two."));
    assert!(!check(false, "{oops"));
    // The template gets the tools as they are and the calls with `arguments` objects.
    let mut call = ChatMessage::new("assistant", "");
    call.tool_calls = Some(vec![ToolCall {
        id: "call_0".into(),
        kind: "function".into(),
        function: tools::FunctionCall {
            name: "add".into(),
            arguments: "{\"a\":1,\"b\":2}".into(),
        },
    }]);
    let ctx = CallFormat::Llama3.context(&[call], &refs, false);
    assert_eq!(ctx["tools"][1]["function"]["name"], json!("add"));
    assert_eq!(
        ctx["messages"][0]["tool_calls"][0]["function"]["arguments"],
        json!({"a": 1, "b": 2})
    );
}

/// The web's structured module path, natively: the token bytes through their flat layout (as
/// handed over to the module), a greedy-tokenizing factory, and the same masks step by step as
/// the in-process vocabulary; `has_special` agrees with llguidance's trie.
#[test]
fn module_path_gives_the_same_masks_as_the_in_process_one() {
    for tool_tokens in [true, false] {
        let (tok, vocab) = qwen_like(tool_tokens);
        let tokens = TokenBytes::new(&tok, 300, &[260]).unwrap();
        let (flat, ends) = tokens.flat();
        let back =
            TokenBytes::from_flat(&flat, &ends, tokens.vocab_size, tokens.eos, tokens.bos, tokens.words).unwrap();
        assert_eq!(back.bytes, tokens.bytes);
        assert!(TokenBytes::from_flat(&flat, &[3, 1], 300, 260, None, 10).is_err());
        let greedy = guidance::Factory::greedy(&back).unwrap();
        let in_process = guidance::Factory::with_tokenizer(&tokens, tok.hf().clone()).unwrap();
        let trie = in_process.factory_trie_has_special("<tool_call>");
        assert_eq!(vocab.has_special("<tool_call>"), trie);
        let tools = weather();
        let refs: Vec<&Tool> = tools.iter().collect();
        let spec = CallFormat::Hermes.grammar(&refs, true, |t| vocab.has_special(t));
        let text = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>";
        let ids = tok.encode(text, false).unwrap();
        let mut a = in_process.constraint(&spec, "tools").unwrap();
        let mut b = greedy.constraint(&spec, "tools").unwrap();
        for i in 0..=ids.len() {
            let ma = a.mask(&ids[..i]).unwrap();
            assert_eq!(ma, b.mask(&ids[..i]).unwrap(), "step {i}");
            assert_eq!(ma.len(), 10);
        }
        assert!(a.is_accepting() && b.is_accepting());
        let Err(e) = greedy.constraint(&GrammarSpec::Regex("(".into()), "response_format.pattern") else {
            panic!("an unbalanced regex compiled")
        };
        assert!(e.to_string().starts_with("response_format.pattern "), "{e}");
        // The spec's JSON (what the core hands to the module) round-trips.
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<GrammarSpec>(&json).unwrap(), spec);
    }
}

/// A vocabulary without a token starting with `{` cannot write a tool call or a JSON object: a
/// required or named call, `json_object` and an object schema are INVALID_ARGUMENT naming the
/// field, the forced start and the missing character, before any token (llguidance would force
/// the start without its `{` and fail at the first token as INTERNAL `ParserTooComplex`); the
/// web module's factory (greedy tokenization) refuses with the same error. `auto` (free text)
/// and formats that need no `{` still work.
#[test]
fn formats_the_vocabulary_cannot_write_are_invalid_argument() {
    type Case<'a> = (
        Option<&'a ResponseFormat>,
        &'a [Tool],
        &'a ToolChoice,
        &'a str,
        String,
        GrammarSpec,
    );
    let tools = weather();
    let refs: Vec<&Tool> = tools.iter().collect();
    let named: ToolChoice = serde_json::from_value(json!({"type": "function", "function": {"name": "add"}})).unwrap();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let object: ResponseFormat =
        serde_json::from_value(json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})).unwrap();
    let msgs = [ChatMessage::new("user", "Weather in Paris?")];
    for (template, format, call_start) in [
        (CHATML, CallFormat::Generic, "{\"name\": \""),
        (QWEN25, CallFormat::Hermes, "<tool_call>\\n{\"name\": \""),
    ] {
        let tok = tokenizer_without(b"{", true, byte_level(), template);
        assert_eq!(CallFormat::of(&tok), format);
        let vocab = Vocab::new(&tok, 300, &[260]).unwrap();
        let special = |t: &str| vocab.has_special(t);
        let required = ToolChoice::Mode("required".into());
        // (response_format, tools, tool_choice, the field named, the forced start, the grammar)
        let cases: [Case; 4] = [
            (
                None,
                &tools,
                &required,
                "tool_choice",
                call_start.into(),
                format.grammar(&refs, true, special),
            ),
            (
                None,
                &tools,
                &named,
                "tool_choice",
                format!("{call_start}add\", \"arguments\": {{\"a\": "),
                format.grammar(&refs[1..], true, special),
            ),
            (
                Some(&ResponseFormat::JsonObject),
                &[],
                &ToolChoice::Auto,
                "response_format",
                "{".into(),
                GrammarSpec::JsonSchema(with_options(json!({"type": "object"}))),
            ),
            (
                Some(&object),
                &[],
                &ToolChoice::Auto,
                "response_format.json_schema.schema",
                "{\"city\": \"".into(),
                GrammarSpec::JsonSchema(with_options(schema.clone())),
            ),
        ];
        let tokens = TokenBytes::new(&tok, 300, &[260]).unwrap();
        let module = guidance::Factory::greedy(&tokens).unwrap();
        for (rf, tools, choice, field, start, spec) in cases {
            let mut cache = None;
            let e = prepare_chat(&tok, 300, &[260], &mut cache, &msgs, rf, tools, choice).unwrap_err();
            let Error::InvalidArgument { field: f, detail } = &e else {
                panic!("{format:?} {field}: {e:?}")
            };
            assert_eq!(f, field, "{format:?}: {e}");
            assert_eq!(
                detail,
                &format!(
                    "cannot be written by this model: its output must start with `{start}`, but the model's \
                     vocabulary has no token starting with '{{'"
                ),
                "{format:?} {field}"
            );
            let Err(m) = module.constraint(&spec, field) else {
                panic!("{format:?} {field}: the module path compiled")
            };
            assert_eq!(m.to_string(), e.to_string(), "{format:?}: module path");
        }
        // `auto`: the call is optional, free text is what the model can write.
        let p = prepare(&vocab, format, &msgs, None, &tools, &ToolChoice::Auto).unwrap();
        assert!(p.constraint.unwrap().accepts_text(&vocab, "It is sunny.").unwrap());
        // Formats that need no `{`.
        for (f, text) in [
            (
                ResponseFormat::Regex {
                    pattern: "[a-z]+".into(),
                },
                "paris",
            ),
            (
                serde_json::from_value(json!({"type": "json_schema", "json_schema": {"schema": {"type": "string"}}}))
                    .unwrap(),
                "\"paris\"",
            ),
        ] {
            let p = prepare(&vocab, format, &msgs, Some(&f), &[], &ToolChoice::Auto).unwrap();
            assert!(p.constraint.unwrap().accepts_text(&vocab, text).unwrap(), "{f:?}");
        }
    }
    // Nothing forced, but no token can start the output (a choice of two missing characters):
    // "allows no output", named, not llguidance's NoExtensionBias state dump.
    let tok = tokenizer_without(b"\"'", false, byte_level(), CHATML);
    let vocab = Vocab::new(&tok, 300, &[260]).unwrap();
    let f = ResponseFormat::Regex {
        pattern: "(\"|')a".into(),
    };
    let e = Constraint::new(&vocab, &f, "response_format").unwrap_err();
    assert_eq!(
        e.to_string(),
        "response_format.pattern allows no output: no token of the model's vocabulary can start it"
    );
    let tokens = TokenBytes::new(&tok, 300, &[260]).unwrap();
    let Err(m) = guidance::Factory::greedy(&tokens)
        .unwrap()
        .constraint(&GrammarSpec::Regex("(\"|')a".into()), "response_format.pattern")
    else {
        panic!("the module path compiled")
    };
    assert_eq!(m.to_string(), e.to_string());
}
