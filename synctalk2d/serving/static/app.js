// The synctalk2d page: pick an avatar (GET /v1/avatars), watch it live over WS /v1/stream?avatar=ID,
// render files (POST /v1/avatars/ID/videos) and create avatars from a video (POST /v1/avatars).
// Audio is sent as 16-bit mono PCM at 16 kHz in 20 ms chunks, paced like a live source.
"use strict";

const RATE = 16000;
const CHUNK = RATE / 50; // 20 ms
const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("synctalk2d-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("synctalk2d-key", keyInput.value); start(); });
let avatars = {};
const avatarId = () => $("avatar").value;

function headers() { return keyInput.value ? { "X-API-Key": keyInput.value } : {}; }

let socket = null, audioContext = null, pendingPlayback = null, player = null, mic = null, sampleRun = 0;
let frames = 0, frameTimes = [], latencies = [], awaitingFirst = false;

function audio() {
  audioContext = audioContext || new AudioContext();
  return audioContext;
}

function setState(text) { $("state").textContent = text; }

function connect() {
  if (socket) socket.close();
  const url = new URL("/v1/stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("width", Math.min(480, Math.round(($("live").clientWidth || 440) * (window.devicePixelRatio || 1))));
  if (avatarId()) url.searchParams.set("avatar", avatarId());
  if (keyInput.value) url.searchParams.set("key", keyInput.value);
  socket = new WebSocket(url);
  socket.binaryType = "blob";
  socket.onmessage = (message) => (typeof message.data === "string" ? onEvent(JSON.parse(message.data)) : onFrame(message.data));
  socket.onclose = () => { ["play-sample", "mic", "interrupt"].forEach((id) => ($(id).disabled = true)); setState("disconnected"); };
}

function onEvent(event) {
  if (event.type === "ready") {
    ["play-sample", "mic", "interrupt"].forEach((id) => ($(id).disabled = false));
    $("live-error").textContent = "";
  } else if (event.type === "utterance_started") {
    setState("speaking");
    awaitingFirst = true;
    if (pendingPlayback) { pendingPlayback(); pendingPlayback = null; } // play the sample in step with its first frame
  } else if (event.type === "utterance_ended") {
    setState(event.interrupted ? "interrupted" : "idle");
  } else if (event.type === "frame") {
    if (awaitingFirst) { $("latency-first").textContent = event.latency_ms.toFixed(0); awaitingFirst = false; }
    latencies.push(event.latency_ms);
    if (latencies.length > 25) latencies.shift();
    $("latency-now").textContent = median(latencies).toFixed(0);
  } else if (event.type === "error") {
    $("live-error").textContent = event.message;
  }
}

function onFrame(blob) {
  const img = $("live"), old = img.src;
  img.src = URL.createObjectURL(blob);
  if (old) URL.revokeObjectURL(old);
  frames += 1;
  const now = performance.now();
  frameTimes.push(now);
  while (frameTimes.length && now - frameTimes[0] > 2000) frameTimes.shift();
  $("frames").textContent = frames;
  $("fps").textContent = (frameTimes.length / Math.min(2, (now - frameTimes[0]) / 1000 || 1)).toFixed(1);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function toPcm(float32) {
  const pcm = new Int16Array(float32.length);
  for (let i = 0; i < float32.length; i++) pcm[i] = Math.max(-1, Math.min(1, float32[i])) * 32767;
  return pcm;
}

async function playSample() {
  const name = $("sample").value;
  const response = await fetch(`/v1/samples/${encodeURIComponent(name)}`, { headers: headers() });
  const decoded = await audio().decodeAudioData(await response.arrayBuffer());
  const offline = new OfflineAudioContext(1, Math.ceil(decoded.duration * RATE), RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const pcm = toPcm((await offline.startRendering()).getChannelData(0));
  const run = ++sampleRun; // an interrupt or a new sample stops this one
  pendingPlayback = () => {
    player = audio().createBufferSource();
    player.buffer = decoded;
    player.connect(audio().destination);
    player.start();
  };
  const started = performance.now();
  for (let sent = 0; sent < pcm.length; sent += CHUNK) {
    if (!socket || socket.readyState !== WebSocket.OPEN || run !== sampleRun) return;
    socket.send(pcm.slice(sent, sent + CHUNK).buffer);
    const due = started + ((sent + CHUNK) / RATE) * 1000; // real time, like a microphone or a streaming TTS
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())));
  }
  socket.send(JSON.stringify({ type: "end" }));
}

async function toggleMic() {
  if (mic) {
    mic.stream.getTracks().forEach((track) => track.stop());
    mic.processor.disconnect();
    await mic.context.close();
    mic = null;
    socket.send(JSON.stringify({ type: "end" }));
    $("mic").textContent = "Speak into the microphone";
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  const context = new AudioContext({ sampleRate: RATE }); // the browser resamples the microphone to 16 kHz
  const input = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(512, 1, 1);
  processor.onaudioprocess = (e) => { if (socket.readyState === WebSocket.OPEN) socket.send(toPcm(e.inputBuffer.getChannelData(0)).buffer); };
  input.connect(processor);
  processor.connect(context.destination);
  mic = { stream, context, processor };
  $("mic").textContent = "Stop speaking";
}

async function renderFile() {
  const file = $("upload").files[0];
  $("job-error").textContent = "";
  if (!file) { $("job-error").textContent = "choose an audio file first"; return; }
  const form = new FormData();
  form.append("audio", file);
  const job = await runJob(`/v1/avatars/${encodeURIComponent(avatarId())}/videos`, form, "job");
  if (!job) return;
  const video = await fetch(`/v1/videos/${job.id}/file`, { headers: headers() });
  $("result").src = URL.createObjectURL(await video.blob());
  $("result").hidden = false;
}

// Post a job and follow it to its end, showing progress in #PREFIX-status and errors in #PREFIX-error.
async function runJob(url, form, prefix) {
  const created = await fetch(url, { method: "POST", body: form, headers: headers() });
  const job = await created.json();
  if (!created.ok) { $(`${prefix}-error`).textContent = job.error || created.statusText; return null; }
  for (;;) {
    const status = await (await fetch(`/v1/jobs/${job.id}`, { headers: headers() })).json();
    $(`${prefix}-status`).textContent = `${status.status} ${(100 * status.progress).toFixed(0)}%`;
    if (status.status === "failed") { $(`${prefix}-error`).textContent = status.error; return null; }
    if (status.status === "done") return job;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function createAvatar() {
  const video = $("avatar-video").files[0], audioFile = $("avatar-audio").files[0];
  $("avatar-error").textContent = "";
  if (!video) { $("avatar-error").textContent = "choose a video first"; return; }
  const form = new FormData();
  form.append("video", video);
  if (audioFile) form.append("audio", audioFile);
  if ($("avatar-name").value) form.append("name", $("avatar-name").value);
  const job = await runJob("/v1/avatars", form, "avatar");
  if (job) await loadAvatars(job.avatar);
}

function showAvatar() {
  const a = avatars[avatarId()];
  $("avatar-info").textContent = a ? `${a.size[0]}×${a.size[1]} · ${a.frames} frames · ${a.conditioning} conditioning` : "no trained avatar on this server";
}

async function loadAvatars(select) {
  const response = await fetch("/v1/avatars", { headers: headers() });
  if (!response.ok) {
    $("avatar-info").textContent = response.status === 401 ? "this server needs an API key" : `server error ${response.status}`;
    return false;
  }
  const ready = (await response.json()).avatars.filter((a) => a.ready);
  avatars = Object.fromEntries(ready.map((a) => [a.id, a]));
  $("avatar").replaceChildren(...ready.map((a) => new Option(a.name === a.id ? a.id : `${a.name} (${a.id})`, a.id)));
  if (select) $("avatar").value = select;
  showAvatar();
  connect();
  return true;
}

async function start() {
  if (!(await loadAvatars())) return;
  const { samples } = await (await fetch("/v1/samples", { headers: headers() })).json();
  $("sample").replaceChildren(...samples.map((name) => new Option(name, name)));
  const health = await (await fetch("/healthz", { headers: headers() })).json();
  $("new-avatar").hidden = Boolean(health.avatar); // a one-avatar server (--avatar) makes no new ones
}

$("play-sample").addEventListener("click", () => { audio().resume(); playSample().catch((e) => ($("live-error").textContent = String(e))); });
$("mic").addEventListener("click", () => toggleMic().catch((e) => ($("live-error").textContent = String(e))));
$("interrupt").addEventListener("click", () => {
  sampleRun += 1;
  pendingPlayback = null;
  if (player) { player.stop(); player = null; }
  socket.send(JSON.stringify({ type: "interrupt" }));
});
$("render").addEventListener("click", () => renderFile().catch((e) => ($("job-error").textContent = String(e))));
$("create-avatar").addEventListener("click", () => createAvatar().catch((e) => ($("avatar-error").textContent = String(e))));
$("avatar").addEventListener("change", () => { showAvatar(); connect(); });
start();
