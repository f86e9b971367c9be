// The Ownlight console's only script. A model's answer is only ever put on the page as
// text while it streams, then replaced by the HTML the server rendered with HTML off and
// sanitized; the Content-Security-Policy forbids inline script besides.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json", "x-csrf-token": csrf()},
    body: JSON.stringify(body || {}),
  });
  return response;
}

function labels() {
  const node = document.getElementById("labels");
  return node ? node.dataset : {};
}

function factsList(facts, citations, question) {
  const L = labels();
  const list = el("dl", {class: "facts"});
  const add = (term, value) => {
    list.append(el("dt", {}, term), el("dd", {}, value));
  };
  if (facts) {
    const where = facts.inside_domain === false ? L.cloud : L.local;
    add(L.served, `${where} · ${facts.route || facts.model || "?"}`);
    if (facts.reason) add(L.reason, facts.reason);
    if (facts.sensitivity) add(L.sensitivity, facts.sensitivity);
    const types = Object.entries(facts.pseudonymized || {});
    add(L.pseudonymized, types.length ? types.map(([k, n]) => `${k} × ${n}`).join(", ") : L.nothingLeft);
    const guard = facts.guard || {};
    if (guard.input_flagged || guard.flagged || guard.chunks_flagged || guard.tool_results_flagged || guard.chunks_withheld) {
      const warning = el("dd", {class: "warning", role: "note"}, L.warning);
      list.append(el("dt", {}, "⚠"), warning);
    }
  }
  const wrap = el("div", {class: "answer-facts"});
  wrap.append(list);
  if (citations && citations.length) {
    const sources = el("ol", {class: "citations", "aria-label": L.sources});
    for (const c of citations) {
      const q = new URLSearchParams({q: question, collection: c.collection, document: c.document_id, chunk: String(c.chunk)});
      const link = el("a", {href: `/console/knowledge?${q}#chunk-${c.document_id}-${c.chunk}`}, `[${c.index}] ${c.title}`);
      const item = el("li");
      item.append(link);
      sources.append(item);
    }
    wrap.append(el("h3", {}, L.sources), sources);
  }
  return wrap;
}

async function ask(form) {
  const L = labels();
  const status = document.getElementById("chat-status");
  const message = form.querySelector("#message").value;
  const knowledge = [...form.querySelectorAll("input[name=knowledge]:checked")].map(i => i.value);
  const turn = el("article", {class: "turn"});
  const q = el("div", {class: "question"});
  q.append(el("span", {class: "role"}, L.you), el("p", {}, message));
  const a = el("div", {class: "answer"});
  const body = el("div", {class: "body streaming"});
  a.append(el("span", {class: "role"}, L.assistant), body);
  turn.append(q, a);
  document.getElementById("turns").append(turn);
  status.textContent = L.thinking;
  form.querySelector("#message").value = "";
  const response = await post("/console/api/chat", {
    message, knowledge, model: form.querySelector("#model").value,
    conversation: form.dataset.conversation || null,
  });
  if (!response.ok) {
    let text = L.error;
    try { text = (await response.json()).error.message; } catch (e) { /* keep the generic text */ }
    body.textContent = text;
    body.classList.add("error");
    status.textContent = "";
    return;
  }
  const conversation = response.headers.get("x-console-conversation");
  const requestId = response.headers.get("x-ownlight-request-id");
  if (conversation && !form.dataset.conversation) {
    form.dataset.conversation = conversation;
    history.replaceState(null, "", `/console/c/${conversation}`);
    listConversation(conversation, message);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", responseId = null, failed = null;
  const text = document.createTextNode("");
  body.append(text);
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const event = JSON.parse(line.slice(6));
        if (event.type === "response.output_text.delta") text.appendData(event.delta);
        else if (event.type === "response.completed") responseId = event.response.id;
        else if (event.type === "response.failed" || event.type === "error") failed = event;
      }
    }
  }
  body.classList.remove("streaming");
  status.textContent = "";
  if (failed || !responseId) {
    body.classList.add("error");
    if (!text.data) text.appendData(L.error);
    return;
  }
  const details = await fetch(`/console/api/answers/${requestId}?response=${encodeURIComponent(responseId)}`,
                              {credentials: "same-origin"});
  if (details.ok) {
    const data = await details.json();
    body.innerHTML = data.html;  // rendered with HTML off and sanitized by the server
    a.append(factsList(data.facts, data.citations, message));
  }
}

// A new conversation joins the list at once (as text; its title is the first message).
function listConversation(id, title) {
  const aside = document.querySelector("aside.conversations");
  if (!aside) return;
  let list = aside.querySelector("ul");
  if (!list) {
    const empty = aside.querySelector("p.muted");
    if (empty) empty.remove();
    list = el("ul");
    aside.append(list);
  }
  const item = el("li", {"data-conversation": id});
  item.append(el("a", {href: `/console/c/${id}`, "aria-current": "page"}, title.slice(0, 120)));
  list.prepend(item);
}

function wireChat() {
  const form = document.getElementById("ask");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    ask(form).finally(() => { button.disabled = false; form.querySelector("#message").focus(); });
  });
  form.querySelector("#message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  const L = labels();
  for (const button of document.querySelectorAll("button.rename")) {
    button.addEventListener("click", async () => {
      const title = window.prompt(L.renamePrompt);
      if (!title) return;
      const r = await post(`/console/api/conversations/${button.dataset.conversation}/rename`, {title});
      if (r.ok) location.reload();
    });
  }
  for (const button of document.querySelectorAll("button.delete")) {
    button.addEventListener("click", async () => {
      if (!window.confirm(L.deleteConfirm)) return;
      const r = await post(`/console/api/conversations/${button.dataset.conversation}/delete`);
      if (r.ok) location.assign("/console/");
    });
  }
}

function wireUpload() {
  const form = document.getElementById("upload");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const progress = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    const request = new XMLHttpRequest();
    request.open("POST", "/console/api/knowledge/upload");
    request.setRequestHeader("x-csrf-token", csrf());
    progress.hidden = false;
    progress.value = 0;
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = Math.round(100 * e.loaded / e.total);
    });
    request.addEventListener("load", () => {
      progress.value = 100;
      if (request.status === 200) {
        const report = JSON.parse(request.responseText);
        status.textContent = `${status.dataset.done} ${report.file} → ${report.collection} (${report.documents_added + report.documents_updated})`;
      } else {
        let message = "";
        try { message = JSON.parse(request.responseText).error.message; } catch (e) { /* none */ }
        status.textContent = `${status.dataset.failed} ${message}`;
      }
    });
    request.send(new FormData(form));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireChat();
  wireUpload();
  const focus = document.querySelector(".hits li.focus");
  if (focus) focus.scrollIntoView();
});
