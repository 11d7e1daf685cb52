// Datasets in LMFlow's JSON format (formats/datasets.md): a directory of .json
// files, each {"type": ..., "instances": [...]}, all of one type — text_only,
// text2text or conversation for finetuning; paired_conversation or
// paired_text_to_text (a chosen and a rejected side) for reward models and
// DPO — or JSONL files with one instance per line.
// Instances are checked completely (file, instance index, key) before any
// training starts, then tokenized into ids with a per-token "trained" mask.

import Foundation
import WrenFormat
import WrenEngine
import WrenTokenizer

public enum DatasetType: String, Sendable, CaseIterable {
    case textOnly = "text_only"
    case text2text
    case conversation
    /// {"chosen": {"messages", "system"}, "rejected": {...}}: each side a conversation.
    case pairedConversation = "paired_conversation"
    /// {"prompt", "chosen", "rejected"}: each side prompt + response.
    case pairedTextToText = "paired_text_to_text"

    /// Whether instances are preference pairs (reward models, DPO).
    public var isPaired: Bool { self == .pairedConversation || self == .pairedTextToText }
}

public struct DatasetError: Error, CustomStringConvertible {
    public let message: String
    public init(_ file: String, instance: Int? = nil, key: String? = nil, _ reason: String) {
        var where_ = file
        if let instance { where_ += ": instance \(instance)" }
        if let key { where_ += ", key \"\(key)\"" }
        message = "\(where_): \(reason)"
    }
    public var description: String { message }
}

/// One validated instance, before tokenization.
public enum RawInstance: Sendable, Equatable {
    case text(String)
    case text2text(input: String, output: String)
    case conversation(system: String?, messages: [ChatMessage])
    /// A preference pair: each side a text2text (prompt, response) or a conversation.
    indirect case pair(chosen: RawInstance, rejected: RawInstance)
}

/// Where an instance came from (for error messages).
public struct InstanceSource: Sendable, Equatable {
    public var file: String
    public var index: Int
}

public struct RawDataset: Sendable {
    public var type: DatasetType
    public var instances: [RawInstance]
    public var sources: [InstanceSource]

    /// Loads every .json / .jsonl file of a directory (sorted by name), or one file.
    /// `prompts`: conversations are prompts (they must end with a user turn, not an assistant's).
    public static func load(_ path: String, prompts: Bool = false) throws -> RawDataset {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw DatasetError(path, "no such file or directory")
        }
        var files: [String] = []
        if isDir.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = names.filter { $0.hasSuffix(".json") || $0.hasSuffix(".jsonl") }.sorted().map { path + "/" + $0 }
            guard !files.isEmpty else { throw DatasetError(path, "the directory holds no .json or .jsonl files") }
        } else {
            files = [path]
        }
        var type: DatasetType?
        var typeFile = ""
        var instances: [RawInstance] = []
        var sources: [InstanceSource] = []
        for f in files {
            guard let data = MappedFile.contents(of: f) else { throw DatasetError(f, "cannot read the file") }
            let (t, items) = f.hasSuffix(".jsonl") ? try parseJSONL(data, file: f) : try parseJSON(data, file: f)
            if let type, type != t {
                throw DatasetError(f, key: "type", "is \(t.rawValue) but \(typeFile) is \(type.rawValue); all files of a dataset must have one type")
            }
            type = t
            typeFile = f
            for (i, inst) in items.enumerated() {
                instances.append(try parseInstance(inst, type: t, file: f, index: i, prompts: prompts))
                sources.append(InstanceSource(file: f, index: i))
            }
        }
        guard let type, !instances.isEmpty else { throw DatasetError(path, "the dataset has no instances") }
        return RawDataset(type: type, instances: instances, sources: sources)
    }

    static func parseJSON(_ data: Data, file: String) throws -> (DatasetType, [Any]) {
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: data) } catch {
            throw DatasetError(file, "not valid JSON (\(jsonErrorDetail(error)))")
        }
        guard let d = obj as? [String: Any] else { throw DatasetError(file, "the top level must be an object with \"type\" and \"instances\"") }
        guard let ts = d["type"] else { throw DatasetError(file, key: "type", "missing") }
        guard let tstr = ts as? String, let t = DatasetType(rawValue: tstr) else {
            throw DatasetError(file, key: "type", "must be one of \(DatasetType.allCases.map(\.rawValue).joined(separator: ", ")) (got \(ts))")
        }
        guard let inst = d["instances"] else { throw DatasetError(file, key: "instances", "missing") }
        guard let items = inst as? [Any] else { throw DatasetError(file, key: "instances", "must be a list") }
        return (t, items)
    }

    /// JSONL: one instance per line; the type follows from the keys of the first one.
    static func parseJSONL(_ data: Data, file: String) throws -> (DatasetType, [Any]) {
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(file, "not UTF-8 text") }
        var items: [Any] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let s = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if s.isEmpty { continue }
            do { items.append(try JSONSerialization.jsonObject(with: Data(s.utf8))) } catch {
                throw DatasetError(file, "line \(n + 1) is not valid JSON (\(jsonErrorDetail(error)))")
            }
        }
        guard let first = items.first as? [String: Any] else { throw DatasetError(file, instance: 0, "must be an object") }
        let t: DatasetType
        if first["chosen"] != nil || first["rejected"] != nil {
            t = first["prompt"] != nil ? .pairedTextToText : .pairedConversation
        } else if first["messages"] != nil { t = .conversation } else if first["input"] != nil || first["output"] != nil { t = .text2text } else if first["text"] != nil {
            t = .textOnly
        } else {
            throw DatasetError(file, instance: 0, "has none of the keys \"text\", \"input\"/\"output\", \"messages\", \"chosen\"/\"rejected\"")
        }
        return (t, items)
    }

    static func jsonErrorDetail(_ e: Error) -> String {
        let ns = e as NSError
        return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
    }

    static func parseInstance(_ v: Any, type: DatasetType, file: String, index i: Int, prompts: Bool = false) throws -> RawInstance {
        guard let d = v as? [String: Any] else { throw DatasetError(file, instance: i, "must be an object") }
        func string(_ key: String) throws -> String {
            guard let x = d[key] else { throw DatasetError(file, instance: i, key: key, "missing") }
            guard let s = x as? String else { throw DatasetError(file, instance: i, key: key, "must be a string") }
            return s
        }
        switch type {
        case .pairedTextToText:
            let prompt = try string("prompt")
            var sides: [RawInstance] = []
            for key in ["chosen", "rejected"] {
                let r = try string(key)
                guard !r.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                    throw DatasetError(file, instance: i, key: key, "is an empty response")
                }
                sides.append(.text2text(input: prompt, output: r))
            }
            return .pair(chosen: sides[0], rejected: sides[1])
        case .pairedConversation:
            var sides: [RawInstance] = []
            for key in ["chosen", "rejected"] {
                guard let side = d[key] else { throw DatasetError(file, instance: i, key: key, "missing (a pair needs both sides)") }
                guard side is [String: Any] else { throw DatasetError(file, instance: i, key: key, "must be an object with \"messages\" (and \"system\")") }
                let conv: RawInstance
                do { conv = try parseInstance(side, type: .conversation, file: file, index: i) } catch let e as DatasetError {
                    throw DatasetError(file, instance: i, key: key, e.message.replacingOccurrences(of: "\(file): instance \(i), ", with: ""))
                }
                guard case let .conversation(_, msgs) = conv, let last = msgs.last, last.role == "assistant",
                      !last.content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                    throw DatasetError(file, instance: i, key: key, "must end with a non-empty assistant response")
                }
                sides.append(conv)
            }
            return .pair(chosen: sides[0], rejected: sides[1])
        case .textOnly:
            return .text(try string("text"))
        case .text2text:
            return .text2text(input: try string("input"), output: try string("output"))
        case .conversation:
            var system: String?
            if let s = d["system"], !(s is NSNull) {
                guard let str = s as? String else { throw DatasetError(file, instance: i, key: "system", "must be a string") }
                system = str.isEmpty ? nil : str
            }
            guard let m = d["messages"] else { throw DatasetError(file, instance: i, key: "messages", "missing") }
            guard let list = m as? [Any], !list.isEmpty else { throw DatasetError(file, instance: i, key: "messages", "must be a non-empty list") }
            var msgs: [ChatMessage] = []
            for (j, e) in list.enumerated() {
                guard let md = e as? [String: Any] else { throw DatasetError(file, instance: i, key: "messages[\(j)]", "must be an object") }
                guard let role = md["role"] as? String else { throw DatasetError(file, instance: i, key: "messages[\(j)].role", "missing or not a string") }
                guard ["user", "assistant"].contains(role) else {
                    throw DatasetError(file, instance: i, key: "messages[\(j)].role", "must be \"user\" or \"assistant\" (got \"\(role)\"; the system prompt goes in \"system\")")
                }
                guard let content = md["content"] as? String else { throw DatasetError(file, instance: i, key: "messages[\(j)].content", "missing or not a string") }
                let expected = j % 2 == 0 ? "user" : "assistant"
                guard role == expected else {
                    throw DatasetError(file, instance: i, key: "messages[\(j)].role", "must be \"\(expected)\": turns alternate user, assistant, starting with user")
                }
                msgs.append(ChatMessage(role: role, content: content))
            }
            if prompts {
                guard msgs.last?.role == "user" else {
                    throw DatasetError(file, instance: i, key: "messages", "must end with a user turn (a prompt for the model to answer)")
                }
                return .conversation(system: system, messages: msgs)
            }
            guard msgs.contains(where: { $0.role == "assistant" }) else {
                throw DatasetError(file, instance: i, key: "messages", "has no assistant turn to train on")
            }
            return .conversation(system: system, messages: msgs)
        }
    }
}

/// A tokenized instance: ids and, per id, whether it is a training target.
public struct Example: Sendable, Equatable {
    public var ids: [Int32]
    public var trained: [Bool]
    public var source: InstanceSource
}

public struct TokenizeOptions: Sendable {
    /// Train on prompts too (no masking of inputs / user turns).
    public var trainOnPrompt = false
    public init(trainOnPrompt: Bool = false) { self.trainOnPrompt = trainOnPrompt }
}

public enum DatasetTokenizer {
    /// Tokenizes every instance. text_only: [BOS] text EOS, all trained; text2text:
    /// [BOS] input (masked) output EOS (trained); conversation: rendered with the
    /// chat template, assistant turns (with their end-of-turn marker) trained.
    public static func tokenize(_ ds: RawDataset, model: LlamaModel, chat: ChatFormatter?, options: TokenizeOptions = .init()) throws -> [Example] {
        let tok = model.tokenizer
        let bos: [Int32] = tok.addBOS ? tok.bosID.map { [$0] } ?? [] : []
        let eos: [Int32] = tok.eosID.map { [$0] } ?? []
        var out: [Example] = []
        out.reserveCapacity(ds.instances.count)
        for (inst, src) in zip(ds.instances, ds.sources) {
            var ids: [Int32] = [], trained: [Bool] = []
            func add(_ t: [Int32], _ tr: Bool) { ids += t; trained += Array(repeating: tr || options.trainOnPrompt, count: t.count) }
            switch inst {
            case .pair:
                throw DatasetError(src.file, instance: src.index, "is a preference pair (\(ds.type.rawValue)): pairs train reward models and DPO, not finetune")
            case let .text(s):
                add(bos, false); add(tok.encode(s, addSpecial: false, parseSpecial: false) + eos, true)
            case let .text2text(input, output):
                add(bos, false)
                add(tok.encode(input, addSpecial: false, parseSpecial: false), false)
                add(tok.encode(output, addSpecial: false, parseSpecial: false) + eos, true)
            case let .conversation(system, messages):
                guard let chat else { throw DatasetError(src.file, instance: src.index, "conversation data needs a chat template") }
                let all = (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + messages
                let sys = system == nil ? 0 : 1
                var done = ""
                add(bos, false)
                for k in sys..<all.count where all[k].role == "assistant" {
                    let header = try chat.render(Array(all[..<k]), addGenerationPrompt: true)
                    let full = try chat.render(Array(all[...k]), addGenerationPrompt: false)
                    guard header.hasPrefix(done), full.hasPrefix(header) else {
                        throw DatasetError(src.file, instance: src.index, key: "messages",
                                           "the chat template (\(chat.origin)) does not render this conversation turn by turn, so assistant turns cannot be located")
                    }
                    add(tok.encode(String(header.dropFirst(done.count)), addSpecial: false, parseSpecial: true), false)
                    add(tok.encode(String(full.dropFirst(header.count)), addSpecial: false, parseSpecial: true), true)
                    done = full
                }
                let rest = try chat.render(all, addGenerationPrompt: false)
                if rest.count > done.count, rest.hasPrefix(done) {
                    add(tok.encode(String(rest.dropFirst(done.count)), addSpecial: false, parseSpecial: true), false)
                }
            }
            guard trained.contains(true) else { throw DatasetError(src.file, instance: src.index, "tokenizes to no trained tokens") }
            out.append(Example(ids: ids, trained: trained, source: src))
        }
        return out
    }
}

/// A tokenized preference pair: each side's ids with its trained (response) mask.
public struct ExamplePair: Sendable, Equatable {
    public var chosen: Example
    public var rejected: Example
}

extension DatasetTokenizer {
    /// Tokenizes every pair, each side as its single-sided type would be (the prompt
    /// or user turns masked, the response trained).
    public static func tokenizePairs(_ ds: RawDataset, model: LlamaModel, chat: ChatFormatter?) throws -> [ExamplePair] {
        guard ds.type.isPaired else {
            throw DatasetError(ds.sources.first?.file ?? "dataset", "is \(ds.type.rawValue); reward models and DPO need paired_conversation or paired_text_to_text")
        }
        var out: [ExamplePair] = []
        for (inst, src) in zip(ds.instances, ds.sources) {
            guard case let .pair(c, r) = inst else { continue }
            let sideType: DatasetType = ds.type == .pairedConversation ? .conversation : .text2text
            let both = try tokenize(RawDataset(type: sideType, instances: [c, r], sources: [src, src]), model: model, chat: chat)
            out.append(ExamplePair(chosen: both[0], rejected: both[1]))
        }
        return out
    }
}

/// A training sequence: ids and next-token labels (`ignoreLabel` where not trained).
public struct TrainSequence: Sendable, Equatable {
    public var ids: [Int32]
    public var labels: [Int32]
}

public enum Blocks {
    /// text_only packing: every example's ids concatenated and cut into blocks of
    /// `blockSize` (the last, shorter block kept). Labels shift by one inside a block.
    public static func pack(_ examples: [Example], blockSize: Int) -> [TrainSequence] {
        let ids = examples.flatMap(\.ids), tr = examples.flatMap(\.trained)
        var out: [TrainSequence] = []
        var i = 0
        while i + 1 < ids.count {
            let end = min(ids.count, i + blockSize)
            out.append(sequence(Array(ids[i..<end]), Array(tr[i..<end])))
            i = end
        }
        return out
    }

    /// One sequence per example; longer ones truncated when `truncate`, else an error
    /// naming the instance.
    public static func perExample(_ examples: [Example], blockSize: Int, truncate: Bool) throws -> [TrainSequence] {
        try examples.map { e in
            if e.ids.count > blockSize {
                guard truncate else {
                    throw DatasetError(e.source.file, instance: e.source.index,
                                       "is \(e.ids.count) tokens, longer than the block size \(blockSize) (raise the block size or allow truncation)")
                }
                return sequence(Array(e.ids.prefix(blockSize)), Array(e.trained.prefix(blockSize)))
            }
            return sequence(e.ids, e.trained)
        }
    }

    static func sequence(_ ids: [Int32], _ trained: [Bool]) -> TrainSequence {
        var labels = [Int32](repeating: ignoreLabel, count: ids.count)
        for t in 0..<(ids.count - 1) where trained[t + 1] { labels[t] = ids[t + 1] }
        return TrainSequence(ids: ids, labels: labels)
    }
}
