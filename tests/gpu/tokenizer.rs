//! Tokenizer + chat template against the reference ids (transformers 5.24), natively and in the
//! browser (tokenizer files fetched from the test server there).

use crate::models::{fixture, ids, model, MINILM, MINILM_FIXTURE, SMOLLM2, SMOLLM2_FIXTURE};
use kjarni_web::load::ByteSource;
use kjarni_web::tokenizer::{ChatMessage, Tokenizer};
use kjarni_web::Error;

gpu_test!(minilm_ids_match_reference, async {
    let tok = Tokenizer::load(&model(MINILM).await).await.unwrap();
    let fx = fixture(MINILM_FIXTURE);
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["input_ids"]);
        let got = tok.encode(text, true).unwrap();
        assert_eq!(got, want, "MiniLM ids for {text:?}");
    }
    // Padding to 128 is off: a short text gives a short sequence ([CLS] word [SEP]).
    assert_eq!(tok.encode("hello", true).unwrap(), vec![101, 7592, 102]);
    assert_eq!(
        tok.decode(&tok.encode("A man is playing a guitar.", true).unwrap(), true)
            .unwrap(),
        "a man is playing a guitar."
    );
});

gpu_test!(smollm2_ids_match_reference, async {
    let tok = Tokenizer::load(&model(SMOLLM2).await).await.unwrap();
    assert_eq!(tok.special_tokens().bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!((tok.bos_token_id(), tok.eos_token_id()), (Some(1), Some(2)));
    assert_eq!(tok.template_names(), vec!["default"]);
    let fx = fixture(SMOLLM2_FIXTURE);
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let want = ids(&case["input_ids"]);
        match case["kind"].as_str().unwrap() {
            "chat" => {
                let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
                let text = tok.apply_chat_template(&messages, true).unwrap();
                assert!(
                    text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
                    "{text}"
                );
                assert!(text.ends_with("<|im_end|>\n<|im_start|>assistant\n"), "{text:?}");
                assert_eq!(tok.encode_chat(&messages, true).unwrap(), want, "chat ids");
                assert_eq!(tok.encode(&text, true).unwrap(), want, "chat ids, post-processor on");
                assert_eq!(tok.decode(&want, false).unwrap(), text, "decode of the chat prompt");
            }
            _ => {
                let text = case["text"].as_str().unwrap();
                let got = tok.encode(text, true).unwrap();
                assert_eq!(got, want, "SmolLM2 ids for {:?}", &text[..text.len().min(40)]);
                assert_eq!(tok.decode(&got, false).unwrap(), text, "byte-level BPE round trip");
            }
        }
    }
    let greedy = fixture(SMOLLM2_FIXTURE)["cases"][0]["greedy_text"]
        .as_str()
        .unwrap()
        .to_string();
    let greedy_ids = ids(&fixture(SMOLLM2_FIXTURE)["cases"][0]["greedy_ids"]);
    assert_eq!(tok.decode(&greedy_ids, false).unwrap(), greedy);
    assert_eq!(
        tok.decode(&greedy_ids, true).unwrap(),
        greedy.trim_end_matches("<|im_end|>")
    );
});

gpu_test!(chat_templates_from_tokenizer_config, async {
    let src = model(SMOLLM2).await;
    let json = src.read_all("tokenizer.json").await.unwrap();
    // Older directories: a list of named templates in tokenizer_config.json; HF helpers work.
    let config = br#"{"bos_token": {"content": "<|im_start|>", "lstrip": false}, "eos_token": "<|im_end|>",
      "chat_template": [
        {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'].strip() }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"},
        {"name": "tool_use", "template": "{% if tools is not defined %}{{ raise_exception('tools needed') }}{% endif %}{{ tools | tojson }}"}
      ]}"#;
    let tok = Tokenizer::from_bytes(&json, Some(config), None).unwrap();
    assert_eq!(tok.template_names(), vec!["default", "tool_use"]);
    let msgs = [
        ChatMessage::new("user", "  hi there  "),
        ChatMessage::new("assistant", "hello"),
    ];
    assert_eq!(
        tok.apply_chat_template(&msgs, true).unwrap(),
        "<|im_start|>user: hi there\nassistant: hello\nassistant:"
    );
    let e = tok
        .render_template(Some("tool_use"), serde_json::json!({"messages": []}))
        .unwrap_err();
    assert!(matches!(&e, Error::Tokenizer(m) if m.contains("tools needed")), "{e}");
    // Keys in their order, as transformers' `tojson` (`json.dumps`, no `sort_keys`) writes them.
    let tools = serde_json::json!({"tools": [{"name": "f", "args": ["x", "é"]}]});
    assert_eq!(
        tok.render_template(Some("tool_use"), tools).unwrap(),
        r#"[{"name": "f", "args": ["x", "é"]}]"#
    );
    let e = tok.render_template(Some("nope"), serde_json::json!({})).unwrap_err();
    assert!(
        matches!(&e, Error::Tokenizer(m) if m.contains("default, tool_use")),
        "{e}"
    );
    // A plain string template; chat_template.jinja overrides it.
    let config = br#"{"chat_template": "A{{ messages[0].content }}"}"#;
    let tok = Tokenizer::from_bytes(&json, Some(config), None).unwrap();
    assert_eq!(tok.apply_chat_template(&msgs, false).unwrap(), "A  hi there  ");
    let tok = Tokenizer::from_bytes(&json, Some(config), Some("B{{ messages|length }}")).unwrap();
    assert_eq!(tok.apply_chat_template(&msgs, false).unwrap(), "B2");
    // Broken inputs are typed errors.
    assert!(matches!(
        Tokenizer::from_bytes(b"{", None, None),
        Err(Error::Tokenizer(_))
    ));
    let e = Tokenizer::from_bytes(&json, None, Some("{% for %}")).unwrap_err();
    assert!(
        matches!(&e, Error::Tokenizer(m) if m.contains("does not compile")),
        "{e}"
    );
    let tok = Tokenizer::from_bytes(&json, None, None).unwrap();
    assert!(matches!(tok.apply_chat_template(&msgs, true), Err(Error::Tokenizer(m)) if m.contains("none")));
});
