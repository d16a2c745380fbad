// Advocata playground: a workbench for prompt engineers, on the public API only.
// Vanilla JS, no build step, no network beyond this server.
"use strict";

const $ = (selector) => document.querySelector(selector);

const state = {
  token: localStorage.getItem("advocata.token") || "",
  conversationId: null,
  socket: null,
  prompts: [],
  documents: [],
  turn: null, // the turn whose answer is streaming
  session: 0, // bumped when the token changes: answers for the previous user are dropped
  conversationsSeq: 0, // only the latest conversation list is drawn
  attachments: [], // {id, name}: uploaded documents the next message carries
  recorder: null, // the MediaRecorder of a voice question being recorded
};
const HINT = $("#turns .hint").cloneNode(true);

// An answer nobody should see: the token was refused, or changed while it was in flight.
class Dropped extends Error {}

// ---- API -------------------------------------------------------------------------------

async function api(path, options = {}) {
  const session = state.session;
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (session !== state.session) throw new Dropped("the token changed");
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({}));
  const message = body.error || `${response.status} ${response.statusText}`;
  if (response.status === 401) {
    refuseToken(message);
    throw new Dropped(message);
  }
  if (!response.ok) throw new Error(message);
  return body;
}

function postJson(path, data) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
  });
}

// ---- Small helpers ---------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function short(sha) {
  return sha ? sha.slice(0, 10) : "—";
}

function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text || "";
  banner.hidden = !text;
}

// A catch handler that reports on the banner, except what nobody should see.
function fail(prefix) {
  return (error) => {
    if (!(error instanceof Dropped)) showBanner(`${prefix}${error.message}`);
  };
}

function tokenSubject(token) {
  // Display only: the server checks the signature.
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || "";
  } catch {
    return "";
  }
}

// ---- Token -----------------------------------------------------------------------------

async function useToken(token) {
  resetUser();
  state.token = token.trim();
  localStorage.setItem("advocata.token", state.token);
  try {
    await loadPrompts();
  } catch (error) {
    fail("Could not load the prompts: ")(error);
    return;
  }
  $("#whoami").textContent = `user ${tokenSubject(state.token)}`;
  await Promise.all([loadDocuments(), loadConversations()]).catch(fail(""));
}

// A new token is a new user: nothing of the previous one stays on screen or on the wire.
function resetUser() {
  state.session += 1;
  closeSocket();
  clearTimeout(documentPoll);
  Object.assign(state, {
    conversationId: null, turn: null, prompts: [], documents: [], pendingRag: undefined,
    attachments: [],
  });
  drawAttachments();
  for (const id of ["#whoami", "#model", "#reload-mode", "#conv-tokens"]) $(id).textContent = "";
  for (const id of ["#prompts tbody", "#docs", "#convs"]) $(id).replaceChildren();
  $("#conv-title").textContent = "No conversation open";
  $("#turns").replaceChildren(HINT.cloneNode(true));
  $("#stop").disabled = true;
  setSocketState("disconnected");
  showBanner("");
  $("#banner").classList.remove("prompt-error");
}

function refuseToken(reason) {
  resetUser();
  state.token = "";
  localStorage.removeItem("advocata.token");
  $("#token").value = "";
  setSocketState("disconnected", "token refused");
  const why = reason.replace(/\.$/, "");
  showBanner(`Token refused: ${why}. Paste a valid token (advocata-chat token --user UUID).`);
}

// ---- Prompts ---------------------------------------------------------------------------

async function loadPrompts() {
  const body = await api("/api/v1/prompts");
  state.prompts = body.prompts;
  $("#reload-mode").textContent = body.live_reload ? "live reload" : "loaded at start";
  const model = $("#model");
  model.textContent = `model: ${body.model}`;
  model.title = body.model === "offline-extractive"
    ? "No chat model is configured: answers are sentences picked from your documents"
    : "The chat model that answers";
  const rows = $("#prompts tbody");
  rows.replaceChildren();
  const broken = [];
  for (const p of body.prompts) {
    const row = el("tr", p.error ? "broken" : "");
    row.dataset.name = p.name;
    row.title = p.description || "";
    row.append(el("td", "name", p.name), el("td", "sha", short(p.sha256)));
    rows.append(row);
    if (p.error) {
      const detail = el("tr", "error-row");
      const cell = el("td", "", p.error);
      cell.colSpan = 2;
      detail.append(cell);
      rows.append(detail);
      broken.push(p);
    }
  }
  // A broken edit must be impossible to miss: the page says it at the top.
  const banner = $("#banner");
  if (broken.length) {
    showBanner(broken.map((p) => `Prompt edit not in use: ${p.error}. `
      + (p.sha256 ? `The last good version of ${p.name} (${short(p.sha256)}) answers meanwhile.`
        : "")).join("\n"));
    banner.classList.add("prompt-error");
  } else if (banner.classList.contains("prompt-error")) {
    showBanner("");
    banner.classList.remove("prompt-error");
  }
  return body.prompts;
}

// The versions that produced an answer are stored with it (message.generation.prompts).
function storedVersions(message) {
  const prompts = message && message.generation && message.generation.prompts;
  if (!prompts) return null;
  return Object.entries(prompts).map(([name, sha]) => `${name} ${short(sha)}`).join(" · ");
}

function promptVersions(names) {
  return names.map((name) => {
    const p = state.prompts.find((x) => x.name === name);
    return `${name} ${short(p && p.sha256)}`;
  }).join(" · ");
}

// ---- Documents -------------------------------------------------------------------------

let documentPoll = null;

async function loadDocuments() {
  const page = await api("/api/v1/documents?limit=100");
  state.documents = page.items;
  const list = $("#docs");
  list.replaceChildren();
  for (const d of page.items) {
    const item = el("li");
    item.dataset.status = d.status;
    item.append(el("span", "title", d.title));
    const progress = d.progress && d.progress.total ? ` ${d.progress.done}/${d.progress.total}` : "";
    const info =
      d.status === "ready"
        ? `${d.chunk_count} chunks`
        : d.error || (d.status === "queued" ? "waiting for a worker…" : `indexing…${progress}`);
    item.append(el("span", `status ${d.status}`, d.status), el("span", "muted small", info));
    list.append(item);
  }
  if (!page.items.length) list.append(el("li", "muted", "No documents yet"));
  // Indexing continues in the background: poll until every document settles.
  clearTimeout(documentPoll);
  if (page.items.some((d) => d.status === "queued" || d.status === "processing")) {
    documentPoll = setTimeout(() => loadDocuments().catch(() => {}), 1500);
  }
}

async function upload(event) {
  event.preventDefault();
  const file = $("#file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  $("#upload").disabled = true;
  try {
    await api("/api/v1/documents", { method: "POST", body: form });
    $("#file").value = "";
    showBanner("");
  } catch (error) {
    showBanner(`Upload refused: ${error.message}`);
  } finally {
    $("#upload").disabled = false;
  }
  await loadDocuments();
}

// ---- Conversations ---------------------------------------------------------------------

async function loadConversations() {
  const seq = ++state.conversationsSeq;
  const page = await api("/api/v1/chat/conversations?limit=50");
  if (seq !== state.conversationsSeq) return; // a later call draws the list
  const list = $("#convs");
  list.replaceChildren();
  for (const c of page.items) {
    const item = el("li", c.id === state.conversationId ? "active" : "");
    item.dataset.id = c.id;
    item.append(el("span", "title", c.title || "Untitled"));
    item.append(el("span", "muted small", `${c.messages_count} msgs · ${c.total_tokens} tokens`));
    item.addEventListener("click", () => openConversation(c.id).catch(fail("")));
    list.append(item);
  }
  if (!page.items.length) list.append(el("li", "muted", "No conversations yet"));
}

async function newConversation() {
  try {
    const conversation = await postJson("/api/v1/chat/conversations", {});
    await openConversation(conversation.id);
  } catch (error) {
    fail("")(error);
  }
}

async function openConversation(id) {
  const conversation = await api(`/api/v1/chat/conversations/${id}?include_messages=true`);
  state.conversationId = id;
  state.turn = null;
  showTitle(conversation.title);
  showTotals(conversation);
  const turns = $("#turns");
  turns.replaceChildren();
  let turn = null;
  for (const m of conversation.messages) {
    if (m.role === "user") {
      turn = newTurn(m.content, m);
    } else {
      turn = turn || newTurn("");
      // Stored answers keep their citations but not the retrieved chunks.
      renderCitationsOnly(turn, m.citations || []);
      finishTurn(turn, m, storedVersions(m));
      turn = null;
    }
  }
  connect(id);
  await loadConversations();
}

function showTitle(title) {
  $("#conv-title").textContent = title || "Untitled";
  const item = $(`#convs li[data-id="${state.conversationId}"] .title`);
  if (item) item.textContent = title || "Untitled";
}

function showTotals(conversation) {
  const total = conversation.total_tokens ?? "?";
  const count = conversation.messages_count ?? "?";
  $("#conv-tokens").textContent = `${count} messages · ${total} tokens`;
}

// ---- WebSocket -------------------------------------------------------------------------

// The pill tells the state of this page's socket (disconnected, connecting, connected);
// the model has a pill of its own.
function setSocketState(name, reason) {
  const pill = $("#socket");
  pill.dataset.state = name;
  pill.textContent = reason ? `${name}: ${reason}` : name;
  $("#send").disabled = name !== "connected" || Boolean(state.turn);
  $("#record").disabled = (name !== "connected" || Boolean(state.turn)) && !state.recorder;
}

function closeSocket() {
  const socket = state.socket;
  state.socket = null;
  if (socket) {
    socket.onclose = null;
    socket.onmessage = null;
    socket.close();
  }
}

function connect(id) {
  closeSocket();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/chat/${id}?token=${encodeURIComponent(state.token)}`;
  const socket = new WebSocket(url);
  state.socket = socket;
  setSocketState("connecting");
  socket.onmessage = (event) => onFrame(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    if (event.code === 4401) {
      refuseToken(event.reason || "the server closed the socket");
      return;
    }
    setSocketState("disconnected", event.reason || "closed");
  };
}

function onFrame(frame) {
  switch (frame.type) {
    case "connected":
      setSocketState("connected");
      break;
    case "title":
      showTitle(frame.title);
      loadConversations().catch(() => {});
      break;
    case "message_received":
      state.turn = newTurn(frame.message.content, frame.message);
      setBusy(true);
      break;
    case "sources":
      ensureTurn().sources = frame.sources;
      renderSources(state.turn, []);
      break;
    case "token": {
      const turn = ensureTurn();
      turn.text += frame.delta;
      turn.answer.textContent = turn.text;
      turn.node.classList.add("streaming");
      keepInView(turn.answer);
      break;
    }
    case "message":
      if (frame.message.role !== "assistant") break;
      finishStreamedTurn(frame);
      break;
    case "cancelled":
      if (state.turn) finishTurn(state.turn, null, null, "stopped before any text");
      state.turn = null;
      setBusy(false);
      break;
    case "error":
      if (state.turn) {
        finishTurn(state.turn, null, null, `error: ${frame.error}`);
        state.turn = null;
      } else {
        showBanner(frame.error);
      }
      setBusy(false);
      break;
    default:
      break; // pong and frame types this page does not know
  }
}

function ensureTurn() {
  if (!state.turn) {
    state.turn = newTurn("");
    setBusy(true);
  }
  return state.turn;
}

function setBusy(busy) {
  $("#stop").disabled = !busy;
  const closed = !(state.socket && state.socket.readyState === WebSocket.OPEN);
  $("#send").disabled = busy || closed;
  $("#record").disabled = (busy || closed) && !state.recorder;
}

async function finishStreamedTurn(frame) {
  const turn = ensureTurn();
  state.turn = null;
  if (frame.conversation) showTotals(frame.conversation);
  // Read the versions now: in development an edit is picked up by the turn that follows it.
  await loadPrompts().catch(() => {});
  const rag = turn.rag ?? (turn.sources || []).length > 0;
  const names = rag ? ["answer", "condense"] : ["chat"];
  finishTurn(turn, frame.message, storedVersions(frame.message) || promptVersions(names));
  renderSources(turn, frame.message.citations || []);
  keepInView(turn.answer.parentElement);
  setBusy(false);
  loadConversations().catch(() => {});
}

function send(event) {
  event.preventDefault();
  const content = $("#question").value.trim();
  if (!content || !state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  const useRag = $("#use-rag").checked;
  const frame = { type: "message", content, use_rag: useRag };
  if (state.attachments.length) frame.attachments = state.attachments.map((a) => a.id);
  state.socket.send(JSON.stringify(frame));
  // The server answers from documents when asked to and at least one is ready, and always
  // from the attachments.
  state.pendingRag = (useRag && state.documents.some((d) => d.status === "ready"))
    || state.attachments.length > 0;
  state.attachments = [];
  drawAttachments();
  $("#question").value = "";
  setBusy(true);
}

// ---- Attachments and voice -------------------------------------------------------------

// Files attached to the next message are uploaded at once, as documents (OCR-ed if photos);
// the `message` frame names them by id.
async function attach() {
  const input = $("#attach");
  for (const file of [...input.files]) {
    const form = new FormData();
    form.append("file", file);
    try {
      const doc = await api("/api/v1/documents", { method: "POST", body: form });
      state.attachments.push({ id: doc.id, name: doc.filename });
      showBanner("");
    } catch (error) {
      fail(`Attachment ${file.name} refused: `)(error);
    }
  }
  input.value = "";
  drawAttachments();
  loadDocuments().catch(() => {});
}

function drawAttachments() {
  const list = $("#attached");
  list.replaceChildren();
  for (const a of state.attachments) {
    const chip = el("li", "chip", `📎 ${a.name} `);
    chip.dataset.id = a.id;
    const remove = el("button", "small", "×");
    remove.type = "button";
    remove.title = "Do not attach";
    remove.addEventListener("click", () => {
      state.attachments = state.attachments.filter((x) => x.id !== a.id);
      drawAttachments();
    });
    chip.append(remove);
    list.append(chip);
  }
}

// A voice question is uploaded, then named in a `voice` frame on the socket: the server
// transcribes it and its frames arrive like a typed message's, the transcript as the question.
async function sendVoice(blob, name) {
  if (!state.conversationId || !state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  const form = new FormData();
  form.append("file", blob, name);
  const path = `/api/v1/chat/conversations/${state.conversationId}/voice/uploads`;
  setBusy(true);
  try {
    const upload = await api(path, { method: "POST", body: form });
    const frame = { type: "voice", upload_id: upload.id, use_rag: $("#use-rag").checked };
    state.socket.send(JSON.stringify(frame));
  } catch (error) {
    fail("Voice message refused: ")(error);
    setBusy(false);
  }
}

async function toggleRecording() {
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showBanner(`Microphone unavailable: ${error.message}`);
    return;
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  state.recorder = recorder;
  recorder.ondataavailable = (event) => {
    if (event.data.size) chunks.push(event.data);
  };
  recorder.onstop = () => {
    for (const track of stream.getTracks()) track.stop();
    state.recorder = null;
    $("#record").textContent = "🎤 Record";
    $("#record").classList.remove("recording");
    const type = recorder.mimeType || "audio/webm";
    sendVoice(new Blob(chunks, { type }), type.includes("ogg") ? "voice.ogg" : "voice.webm");
  };
  recorder.start();
  $("#record").textContent = "■ Send recording";
  $("#record").classList.add("recording");
}

function sendVoiceFile() {
  const input = $("#voice-file");
  const file = input.files[0];
  input.value = "";
  if (file) sendVoice(file, file.name);
}

// An answer read aloud: fetched with the token, played from a blob: URL.
async function listen(turn, messageId, button) {
  button.disabled = true;
  try {
    const path = `/api/v1/chat/conversations/${state.conversationId}/messages/${messageId}`;
    const response = await fetch(`${path}/speech?format=ogg`, {
      headers: { Authorization: `Bearer ${state.token}` },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `${response.status} ${response.statusText}`);
    }
    let audio = turn.node.querySelector("audio");
    if (!audio) {
      audio = el("audio");
      audio.controls = true;
      turn.meta.after(audio);
    }
    audio.src = URL.createObjectURL(await response.blob());
    audio.play().catch(() => {}); // a page without a user gesture may not autoplay
  } catch (error) {
    showBanner(`Could not read the answer aloud: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function stop() {
  if (state.socket) state.socket.send(JSON.stringify({ type: "cancel" }));
}

// ---- Turns -----------------------------------------------------------------------------

function newTurn(question, message) {
  const node = $("#turn-template").content.firstElementChild.cloneNode(true);
  const hint = $("#turns .hint");
  if (hint) hint.remove();
  const box = node.querySelector(".question");
  box.textContent = question;
  box.hidden = !question;
  // What the question carried: a voice recording (its text is the transcript), attachments.
  if (message && message.voice) box.prepend(el("span", "voice", "🎤 "));
  for (const a of (message && message.attachments) || []) {
    box.append(el("span", "chip attachment", `📎 ${a.filename}`));
  }
  $("#turns").append(node);
  const turn = {
    node,
    answer: node.querySelector(".answer"),
    meta: node.querySelector(".meta"),
    sourcesBox: node.querySelector(".sources"),
    text: "",
    sources: null,
    rag: state.pendingRag,
  };
  state.pendingRag = undefined;
  node.scrollIntoView({ block: "end" });
  return turn;
}

// Follow the answer itself, not the end of its turn: the sources beside it may be taller.
function keepInView(node) {
  const box = $("#turns");
  const below = node.getBoundingClientRect().bottom - box.getBoundingClientRect().bottom;
  if (below > 0) box.scrollTop += below + 8;
}

function finishTurn(turn, message, versions, warning) {
  turn.node.classList.remove("streaming");
  turn.node.classList.add("done");
  if (message) {
    turn.text = message.content;
    turn.answer.innerHTML = linkCitations(message.content);
    turn.node.dataset.status = message.status;
  }
  turn.meta.replaceChildren();
  if (message && message.token_count != null) {
    turn.meta.append(el("span", "tokens", `${message.token_count} tokens`));
  }
  if (message && message.status !== "complete") turn.meta.append(el("span", "warn", message.status));
  if (versions) turn.meta.append(el("span", "prompts", `prompts: ${versions}`));
  if (warning) turn.meta.append(el("span", "warn", warning));
  if (message && message.id && message.content) {
    const button = el("button", "small listen", "▶ Listen");
    button.type = "button";
    button.addEventListener("click", () => listen(turn, message.id, button));
    turn.meta.append(button);
  }
}

function linkCitations(text) {
  // [1] and [1, 2] become links to the chunk beside the answer.
  return escapeHtml(text).replace(/\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g, (all, group) => {
    const links = group.split(",").map((n) => n.trim())
      .map((n) => `<a href="#" class="cite" data-n="${n}">${n}</a>`);
    return `[${links.join(", ")}]`;
  });
}

function highlight(content, ranges) {
  // ranges: [start, end) offsets in `content`, sorted and not overlapping.
  let html = "";
  let at = 0;
  for (const [start, end] of ranges) {
    if (start < at) continue;
    html += escapeHtml(content.slice(at, start));
    html += `<mark>${escapeHtml(content.slice(start, end))}</mark>`;
    at = end;
  }
  return html + escapeHtml(content.slice(at));
}

function citedRange(source, citation) {
  // Offsets are in the document's text; the chunk starts at source.start.
  const content = source.content || "";
  let start = citation.quote_start - source.start;
  let end = citation.quote_end - source.start;
  const quote = (citation.quote || "").replace(/…$/, "");
  if (!(start >= 0 && end <= content.length && content.slice(start, end).startsWith(quote))) {
    start = content.indexOf(quote); // the chunk was cut to fit the context: find the text
    end = start + (citation.quote_end - citation.quote_start);
  }
  return start >= 0 && quote ? [start, Math.min(end, content.length)] : null;
}

function renderSources(turn, citations) {
  const box = turn.sourcesBox;
  box.replaceChildren();
  const sources = turn.sources || [];
  if (!sources.length) {
    box.append(el("p", "muted small", "No chunks retrieved (plain chat or nothing found)."));
    return;
  }
  for (const s of sources) {
    const card = el("div", "source");
    card.dataset.n = s.n;
    const head = el("div", "source-head");
    head.append(el("span", "n", `[${s.n}]`), el("span", "title", s.title || "untitled"));
    const score = typeof s.score === "number" ? s.score.toFixed(4) : "—";
    const where = `chars ${s.start}–${s.end}${s.page ? ` · p. ${s.page}` : ""}`;
    const facts = el("div", "muted small", `score ${score} · ${s.found_by || "?"} · ${where}`);
    const ranges = citations.filter((c) => c.n === s.n).map((c) => citedRange(s, c))
      .filter(Boolean).sort((a, b) => a[0] - b[0]);
    if (ranges.length) card.classList.add("cited");
    const body = el("div", "content");
    body.innerHTML = highlight(s.content || "", ranges);
    card.append(head, facts, body);
    box.append(card);
  }
}

function renderCitationsOnly(turn, citations) {
  const box = turn.sourcesBox;
  box.replaceChildren();
  for (const c of citations) {
    const card = el("div", "source cited");
    card.dataset.n = c.n;
    const head = el("div", "source-head");
    head.append(el("span", "n", `[${c.n}]`), el("span", "title", c.title || "untitled"));
    const facts = el("div", "muted small", `cited passage · chars ${c.quote_start}–${c.quote_end}`);
    const body = el("div", "content");
    body.append(el("mark", "", c.quote));
    card.append(head, facts, body);
    box.append(card);
  }
}

function onCitationClick(event) {
  const link = event.target.closest("a.cite");
  if (!link) return;
  event.preventDefault();
  const turn = link.closest(".turn");
  const card = turn && turn.querySelector(`.source[data-n="${link.dataset.n}"]`);
  if (!card) return;
  card.scrollIntoView({ block: "nearest", behavior: "smooth" });
  card.classList.remove("flash");
  void card.offsetWidth; // restart the animation
  card.classList.add("flash");
}

// ---- Wiring ----------------------------------------------------------------------------

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useToken($("#token").value);
});
$("#upload-form").addEventListener("submit", upload);
$("#new-conv").addEventListener("click", newConversation);
$("#composer").addEventListener("submit", send);
$("#stop").addEventListener("click", stop);
$("#attach").addEventListener("change", attach);
$("#record").addEventListener("click", toggleRecording);
$("#voice-file").addEventListener("change", sendVoiceFile);
$("#turns").addEventListener("click", onCitationClick);
$("#question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send(event);
});

// Prompt edits show up (or are reported broken) without a reload of the page.
setInterval(() => {
  if (state.token && !document.hidden) loadPrompts().catch(() => {});
}, 4000);

if (state.token) {
  $("#token").value = state.token;
  useToken(state.token);
}
