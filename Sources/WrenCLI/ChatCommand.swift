// `wren chat`: an interactive conversation (or one reply per stdin line when
// stdin is not a terminal), rendered with the model's chat template.

import ArgumentParser
import Foundation
import WrenEngine
import WrenTokenizer
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT; checked between tokens so Ctrl-C stops the current reply.
nonisolated(unsafe) var interruptRequested = false

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a model using its chat template.",
        discussion: "Commands: /reset clears the history, /exit quits. Ctrl-C stops the current reply. When stdin is not a terminal, each line is one user turn and each reply is printed on its own line(s).")

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var chat: ChatTemplateOptions
    @OptionGroup var speculation: SpeculationFlags

    func run() throws {
        do {
            let (m, session) = try model.load()
            let gen = try Generator(model: m, session: session)
            try speculation.apply(to: gen)
            let fmt = try chat.formatter(m)
            let interactive = isatty(0) == 1
            var history: [ChatMessage] = chat.system.map { [ChatMessage(role: "system", content: $0)] } ?? []
            let base = history
            let opts = try sampling.options()
            signal(SIGINT) { _ in
                if interruptRequested { Glibc._exit(130) }   // a second Ctrl-C quits
                interruptRequested = true
            }
            if interactive { stderrLine("wren chat: \(m.file.path) (template: \(fmt.origin)); /reset, /exit, Ctrl-C stops a reply") }
            while true {
                if interactive { Std.err("> ") }
                interruptRequested = false
                guard let line = readLine(strippingNewline: true) else { break }
                if interruptRequested { break }
                let text = line.trimmingCharacters(in: .whitespaces)
                if text.isEmpty { continue }
                if text == "/exit" || text == "/quit" { break }
                if text == "/reset" { history = base; stderrLine("(history cleared)"); continue }
                history.append(ChatMessage(role: "user", content: line))
                let reserve = min(opts.maxTokens ?? 256, session.contextLength / 2)
                let fitted: (messages: [ChatMessage], tokens: [Int32], dropped: Int)
                do {
                    fitted = try fmt.fit(history, context: session.contextLength, reserve: reserve)
                } catch let e as EngineError {
                    stderrLine("wren: \(e.description); this turn is skipped")
                    history.removeLast()
                    continue
                }
                if fitted.dropped > 0 {
                    stderrLine("wren: context full: dropped the \(fitted.dropped) oldest message\(fitted.dropped == 1 ? "" : "s") (the system message is kept)")
                    history = fitted.messages
                }
                var local = opts
                local.maxTokens = min(opts.maxTokens ?? Int.max, session.contextLength - fitted.tokens.count)
                let r = try gen.generate(tokens: fitted.tokens, options: local) { piece, _ in
                    if !piece.isEmpty { Std.out(piece) }
                    return !interruptRequested
                }
                Std.out("\n")
                if r.stopReason == .cancelled { stderrLine("(stopped)") }
                history.append(ChatMessage(role: "assistant", content: r.text))
            }
        } catch { fail(error) }
    }
}
