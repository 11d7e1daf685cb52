// Chat prompts: the model's own Jinja chat template rendered for real
// (Sources/WrenTokenizer/Jinja), with the variables Hugging Face passes
// (messages, add_generation_prompt, bos_token, eos_token, tools), and named
// fallbacks for models whose file carries no template.

import Foundation

public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

public final class ChatTemplate: @unchecked Sendable {
    public let source: String
    public let limits: JinjaLimits
    let nodes: [Node]

    /// Parses `source`, which may be hostile (it comes from a model file): see `JinjaLimits`.
    /// - Throws: `JinjaError` naming the template line of a syntax error, unsupported construct or limit.
    public init(_ source: String, limits: JinjaLimits = JinjaLimits()) throws {
        self.source = source
        self.limits = limits
        nodes = try Self.onLargeStack { try JinjaParser.parse(source, limits: limits) }
    }

    /// Parsing and rendering recurse as deep as the sandbox allows (`maxNesting`, `maxDepth`); they
    /// run on a thread of their own with a 64 MiB stack (reserved, touched only as used), so the
    /// limits hold whatever thread the caller is on (a 512 KiB secondary thread, a debug build).
    static func onLargeStack<T>(_ body: () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            let job = StackJob(body: body)
            let thread = Thread { job.run() }
            thread.stackSize = 64 << 20
            thread.start()
            job.done.wait()
            return try job.result!.get()
        }
    }

    /// Renders a conversation.
    /// - Parameters:
    ///   - tools: JSON-like tool schemas (arrays/dictionaries of String/Int/Double/Bool), or nil.
    /// - Throws: `JinjaError.raised` when the template calls raise_exception (e.g. a role it does not support).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, bosToken: String = "", eosToken: String = "",
                       tools: [Any]? = nil, extra: [String: JinjaValue] = [:]) throws -> String {
        var globals: [String: JinjaValue] = extra
        globals["messages"] = .list(messages.map { .dict([("role", .string($0.role)), ("content", .string($0.content))]) })
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        globals["bos_token"] = .string(bosToken)
        globals["eos_token"] = .string(eosToken)
        globals["tools"] = tools.map { JinjaValue.from($0) }   // nil: no "tools" at all (undefined in the template)
        let r = JinjaInterpreter(globals: globals, limits: limits)
        return try Self.onLargeStack {
            do { try r.render(nodes) } catch JinjaInterpreter.Flow.breakLoop, JinjaInterpreter.Flow.continueLoop {
                throw JinjaError.syntax(line: 0, message: "break/continue outside a loop")
            }
            return r.out
        }
    }

    /// Built-in templates for models without one, by name.
    public static let fallbacks: [String: String] = [
        "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
        "llama3": "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        "mistral": "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{% set sys = message['content'] + '\\n\\n' %}{% elif message['role'] == 'user' %}{{ '[INST] ' + (sys if sys is defined and loop.index0 == 1 else '') + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
        // Gemma (2 and 3): "model" for the assistant; a system message has no turn of its own
        // but opens the first user turn, followed by a blank line.
        "gemma": "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = 1 %}{% set prefix = messages[0]['content'] | trim + '\\n\\n' %}{% else %}{% set first = 0 %}{% set prefix = '' %}{% endif %}{% for message in messages %}{% if loop.index0 >= first %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = 'user' %}{% endif %}{{ '<start_of_turn>' + role + '\\n' }}{% if loop.index0 == first %}{{ prefix }}{% endif %}{{ message['content'] | trim + '<end_of_turn>\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
        "phi3": "{% for message in messages %}{{'<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
        "zephyr": "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
        "alpaca": "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}{% else %}{{ '### Response:\\n' + message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}",
        "vicuna": "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + '\\n' }}{% else %}{{ 'ASSISTANT: ' + message['content'] + eos_token + '\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}",
        // LMFlow's Robin: "###Human: ...###Assistant: ..." after a system line.
        "robin": "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% set loop_messages = messages[1:] %}{% else %}{{ 'A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human\\'s questions.' }}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ '###Human: ' + message['content'] }}{% else %}{{ '###Assistant: ' + message['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '###Assistant:' }}{% endif %}",
    ]

    /// A built-in template by name (see `fallbacks`).
    public static func named(_ name: String) throws -> ChatTemplate? {
        try fallbacks[name.lowercased()].map { try ChatTemplate($0) }
    }
}

/// One call handed to the large-stack thread; the caller waits on `done`, so the thread's
/// writes to `result` happen before the caller reads it.
/// The body is dropped before the caller is woken: the closure must not outlive the call.
private final class StackJob<T>: @unchecked Sendable {
    var body: (() throws -> T)?
    var result: Result<T, Error>?
    let done = DispatchSemaphore(value: 0)
    init(body: @escaping () throws -> T) { self.body = body }
    func run() {
        result = Result(catching: body!)
        body = nil
        done.signal()
    }
}
