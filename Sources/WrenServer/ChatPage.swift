// GET /: a minimal chat page (no dependencies, no build step): the conversation
// kept in the page, each reply streamed from /v1/chat/completions. Text is set
// with textContent, never parsed as HTML.

enum ChatPage {
    static let html = #"""
<!doctype html>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wren</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; max-width: 46em; margin: 2em auto; padding: 0 1em; color: #222 }
#log div { white-space: pre-wrap; margin: .6em 0 }
.user { color: #2a4d7a }
form { display: flex; gap: .5em }
textarea { flex: 1; font: inherit }
small { color: #777 }
</style>
<h3>wren</h3>
<div id="log"></div>
<form id="f"><textarea id="q" rows="2" placeholder="Message (Enter sends, Shift+Enter for a new line)"></textarea><button>Send</button></form>
<p><small>API key, if the server needs one: <input id="key" type="password" size="24"></small></p>
<script>
const log = document.getElementById("log"), q = document.getElementById("q"), form = document.getElementById("f");
const messages = [];
function add(role, text) {
  const d = document.createElement("div");
  d.className = role;
  d.textContent = (role === "user" ? "> " : "") + text;
  log.appendChild(d);
  return d;
}
q.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
form.onsubmit = async e => {
  e.preventDefault();
  const text = q.value.trim();
  if (!text) return;
  q.value = "";
  messages.push({ role: "user", content: text });
  add("user", text);
  const out = add("assistant", "…");
  const headers = { "Content-Type": "application/json" };
  const key = document.getElementById("key").value;
  if (key) headers.Authorization = "Bearer " + key;
  const r = await fetch("/v1/chat/completions", { method: "POST", headers, body: JSON.stringify({ messages, stream: true }) });
  if (!r.ok) { out.textContent = "error: " + await r.text(); messages.pop(); return; }
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let buffer = "", reply = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let i;
    while ((i = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const chunk = JSON.parse(event.slice(6));
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) { reply += delta.content; out.textContent = reply; }
    }
  }
  messages.push({ role: "assistant", content: reply });
};
</script>
"""#
}
