// The synctalk2d page: pick an avatar (GET /v1/avatars), watch it live, render files
// (POST /v1/avatars/ID/videos) and create avatars from a video (POST /v1/avatars).
// Live over WebRTC (POST /v1/webrtc/offer): the sample or the microphone is this page's audio
// track, and the avatar answers with video and voice. Or over WS /v1/stream?avatar=ID: audio
// goes as 16-bit mono PCM at 16 kHz in 20 ms chunks, paced like a live source, frames come back.
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

const rtc = () => $("transport").value === "webrtc";
let peer = null, channel = null, speaker = null, sampleSource = null, sampleStarted = null;

function connect() {
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  if (peer) { peer.close(); peer = null; }
  $("live-video").hidden = !rtc();
  $("live").hidden = rtc();
  if (rtc()) {
    connectRtc().catch((e) => { $("live-error").textContent = String(e); setState("disconnected"); });
    return;
  }
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

// WebRTC: the avatar's video and voice come back on one connection; what the page says goes
// out on its audio track (replaceTrack: no renegotiation), events and interrupt on a data channel.
async function connectRtc() {
  const current = (peer = new RTCPeerConnection({ iceServers: [] }));
  const superseded = () => current !== peer; // the avatar or transport changed meanwhile
  current.addTransceiver("video", { direction: "recvonly" });
  speaker = current.addTransceiver("audio", { direction: "sendrecv" }).sender;
  channel = current.createDataChannel("events");
  channel.onmessage = (message) => onEvent(JSON.parse(message.data));
  current.ontrack = (event) => {
    const video = $("live-video");
    if (video.srcObject !== event.streams[0]) video.srcObject = event.streams[0] || new MediaStream([event.track]);
    if (!event.streams[0]) video.srcObject.addTrack(event.track);
  };
  current.onconnectionstatechange = () => {
    if (superseded()) return;
    if (current.connectionState === "connected") onEvent({ type: "ready" });
    if (["failed", "closed", "disconnected"].includes(current.connectionState)) {
      ["play-sample", "mic", "interrupt"].forEach((id) => ($(id).disabled = true));
      setState("disconnected");
    }
  };
  await current.setLocalDescription(await current.createOffer());
  await new Promise((resolve) => {  // all candidates in the offer: the server does not trickle
    if (current.iceGatheringState === "complete") return resolve();
    current.onicegatheringstatechange = () => current.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 2000);
  });
  if (superseded()) return;
  const width = Math.min(480, Math.round(($("live-video").clientWidth || 440) * (window.devicePixelRatio || 1)));
  const response = await fetch("/v1/webrtc/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers() },
    body: JSON.stringify({ sdp: current.localDescription.sdp, type: current.localDescription.type, avatar: avatarId() || undefined, width }),
  });
  const answer = await response.json();
  if (superseded()) return;
  if (!response.ok) throw new Error(answer.error);
  await current.setRemoteDescription(answer);
  countFrames($("live-video"), current);
}

function countFrames(video, current) {
  if (!video.requestVideoFrameCallback) return;
  const onVideoFrame = () => { if (current !== peer) return; onFrame(null); video.requestVideoFrameCallback(onVideoFrame); };
  video.requestVideoFrameCallback(onVideoFrame);
}

async function rtcStats() {  // what has arrived so far, for the page's own checks and the tests
  const stats = { frames: 0, audioBytes: 0, audioEnergy: 0 };
  if (!peer) return stats;
  (await peer.getStats()).forEach((report) => {
    if (report.type !== "inbound-rtp") return;
    if (report.kind === "video") stats.frames = report.framesDecoded || 0;
    if (report.kind === "audio") { stats.audioBytes = report.bytesReceived || 0; stats.audioEnergy = report.totalAudioEnergy || 0; }
  });
  return stats;
}
window.rtcStats = rtcStats;

function onEvent(event) {
  if (event.type === "ready") {
    ["play-sample", "mic", "interrupt"].forEach((id) => ($(id).disabled = false));
    $("live-error").textContent = "";
  } else if (event.type === "utterance_started") {
    setState("speaking");
    awaitingFirst = !rtc();
    if (rtc() && sampleStarted) { $("latency-first").textContent = (performance.now() - sampleStarted).toFixed(0); sampleStarted = null; }
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
  if (blob) {
    const img = $("live"), old = img.src;
    img.src = URL.createObjectURL(blob);
    if (old) URL.revokeObjectURL(old);
  }
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
  if (rtc()) {  // played into the call, not out loud: the avatar's voice comes back with its video
    if (sampleSource) sampleSource.stop();
    sampleSource = audio().createBufferSource();
    sampleSource.buffer = decoded;
    const into = audio().createMediaStreamDestination();
    sampleSource.connect(into);
    await speaker.replaceTrack(into.stream.getAudioTracks()[0]);
    sampleSource.start();
    sampleStarted = performance.now();
    return;
  }
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
  if (rtc()) {
    if (mic) { mic.getTracks().forEach((track) => track.stop()); mic = null; await speaker.replaceTrack(null); $("mic").textContent = "Speak into the microphone"; return; }
    mic = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    await speaker.replaceTrack(mic.getAudioTracks()[0]);
    $("mic").textContent = "Stop speaking";
    return;
  }
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
  if (sampleSource) { sampleSource.stop(); sampleSource = null; }
  if (rtc()) { if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "interrupt" })); }
  else socket.send(JSON.stringify({ type: "interrupt" }));
});
$("render").addEventListener("click", () => renderFile().catch((e) => ($("job-error").textContent = String(e))));
$("create-avatar").addEventListener("click", () => createAvatar().catch((e) => ($("avatar-error").textContent = String(e))));
$("avatar").addEventListener("change", () => { showAvatar(); connect(); });
$("transport").addEventListener("change", () => connect());
if (!window.RTCPeerConnection) $("transport").value = "websocket";
start();
