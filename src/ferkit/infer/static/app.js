// ferkit page: upload a photo (or a webcam snapshot), draw the faces, show per-face bar charts and,
// on request, each face's heatmap (occlusion sensitivity, computed by the server with explain=true).
// Plain JS, no external files: the page works offline.
"use strict";

const COLORS = {  // same as ferkit/infer/draw.py
  angry: "#dc322f", disgust: "#859900", fear: "#6c71c4", happy: "#eeb400",
  neutral: "#93a1a1", sad: "#268bd2", surprise: "#d33682",
};
const $ = (id) => document.getElementById(id);
const canvas = $("photo"), video = $("video"), results = $("results"), statusLine = $("status");
let stream = null;
let lastUpload = null;  // {blob, name}: sent again when the heatmap box is ticked or cleared

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function loadImage(blob) {
  return loadURL(URL.createObjectURL(blob));
}

function loadURL(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file"));
    img.src = src;
  });
}

async function request(blob, name) {
  // POST one image; returns the JSON answer, or throws an Error with the message to show.
  const form = new FormData();
  form.append("file", blob, name);
  const detect = $("nodetect").checked ? "false" : "true";
  const explain = $("explain").checked ? "true" : "false";
  let response, data;
  try {
    response = await fetch(`/predict?detect=${detect}&explain=${explain}`, { method: "POST", body: form });
    data = await response.json();
  } catch (err) {
    throw new Error(`request failed: ${err.message}`);
  }
  if (!response.ok) throw new Error(`${response.status}: ${data.detail}`);
  return data;
}

function describeAnswer(name, data) {
  return `${name}: ${data.message} (${data.width}×${data.height}) · detector ${data.detector} · `
    + `${data.backend} · ${data.ms} ms on the server`;
}

async function upload(blob, name) {
  lastUpload = { blob, name };
  setStatus($("explain").checked ? "Predicting and explaining…" : "Predicting…");
  results.dataset.state = "busy";
  results.replaceChildren();
  let data;
  try {
    data = await request(blob, name);
  } catch (err) {
    return fail(err.message);
  }
  try {
    await drawPhoto(await loadImage(blob), data);
  } catch (err) {
    drawPlaceholder(data);
  }
  showResults(data);
  setStatus(describeAnswer(name, data) + heatmapNote(data));
  results.dataset.state = "done";
}

function fail(message) {
  setStatus(message, true);
  results.dataset.state = "error";
}

function colorOf(label) { return COLORS[label] || "#2f6fdf"; }

async function drawPhoto(img, data) {
  canvas.width = data.width;
  canvas.height = data.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, data.width, data.height);
  await drawHeatmaps(ctx, data);
  drawBoxes(ctx, data);
}

async function drawHeatmaps(ctx, data) {
  // Each explained face's heatmap (a 48x48 PNG, transparent where cold) stretched over the part of
  // the photo its crop was cut from; the page counts them (data-heatmaps) for its tests.
  const shown = $("explain").checked ? data.faces.filter((f) => f.heatmap && f.heatmap_box) : [];
  const images = await Promise.all(shown.map((f) => loadURL(f.heatmap)));
  ctx.imageSmoothingEnabled = true;
  shown.forEach((face, i) => {
    const [x, y, w, h] = face.heatmap_box;
    ctx.drawImage(images[i], x, y, w, h);
  });
  results.dataset.heatmaps = String(shown.length);
}

function heatmapNote(data) {
  if (!$("explain").checked || data.faces.length === 0) return "";
  const n = data.faces.filter((f) => f.heatmap).length;
  if (n === 0) return " · this server returned no heatmaps";
  return n < data.faces.length ? ` · heatmaps for the ${n} largest faces` : "";
}

function drawBoxes(ctx, data) {
  const line = Math.max(2, Math.round(Math.max(data.width, data.height) / 200));
  const font = Math.max(14, Math.round(Math.max(data.width, data.height) / 30));
  data.faces.forEach((face, i) => {
    const [x, y, w, h] = face.box;
    const color = colorOf(face.label);
    ctx.lineWidth = line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const text = `${i + 1} ${face.label} ${Math.round(face.score * 100)}%`;
    ctx.font = `600 ${font}px system-ui, sans-serif`;
    const tw = ctx.measureText(text).width + 10, th = font + 8;
    const top = y - th >= 0 ? y - th : y + h;  // label above the box, else below it
    ctx.fillStyle = color;
    ctx.fillRect(x - line / 2, top, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 5 - line / 2, top + font);
  });
}

function drawPlaceholder(data) {
  canvas.width = 640; canvas.height = 80;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#65758b";
  ctx.font = "16px system-ui, sans-serif";
  ctx.fillText(`The browser cannot display this format (${data.width}×${data.height}).`, 12, 45);
}

function showResults(data) {
  results.replaceChildren();
  if (data.faces.length === 0) {
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = "No face found. The detector looks for frontal faces at least 48 pixels wide: "
      + "try a photo where the face is larger and looks at the camera, or, for a face crop, tick "
      + "\"the image is a face crop\".";
    results.append(note);
    return;
  }
  data.faces.forEach((face, i) => results.append(faceCard(face, i, data.class_names)));
}

function faceCard(face, i, classNames) {
  const card = document.createElement("div");
  card.className = "face-card";
  card.style.setProperty("--c", colorOf(face.label));
  const title = document.createElement("h2");
  title.textContent = `Face ${i + 1}: ${face.label} `;
  const small = document.createElement("small");
  small.textContent = `${(face.score * 100).toFixed(1)}% · box ${face.box.join(", ")}`;
  title.append(small);
  card.append(title);
  if (face.heatmap && $("explain").checked) {
    const why = document.createElement("p");
    why.className = "why";
    why.dataset.heatmap = "shown";
    why.textContent = `Heatmap: hiding the hottest part lowers p(${face.label}) by `
      + `${Math.round((face.heatmap_drop || 0) * 100)} points.`;
    card.append(why);
  }
  for (const name of classNames) {
    const p = face.probs[name];
    const row = document.createElement("div");
    row.className = "bar-row" + (name === face.label ? " top" : "");
    row.style.setProperty("--c", colorOf(name));
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.cls = name;
    bar.style.width = `${(p * 100).toFixed(1)}%`;
    track.append(bar);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(p * 100).toFixed(1)}%`;
    row.append(label, track, pct);
    card.append(row);
  }
  return card;
}

// ---- file input and drag & drop
$("explain").addEventListener("change", () => {
  if (lastUpload && !live) upload(lastUpload.blob, lastUpload.name);  // the same photo, with or without heatmaps
});
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) { stopWebcam(); upload(file, file.name); }
});
const view = $("view");
view.addEventListener("dragover", (e) => { e.preventDefault(); view.classList.add("over"); });
view.addEventListener("dragleave", () => view.classList.remove("over"));
view.addEventListener("drop", (e) => {
  e.preventDefault();
  view.classList.remove("over");
  const file = e.dataTransfer.files[0];
  if (file) { stopWebcam(); upload(file, file.name); }
});

// ---- webcam: getUserMedia needs a secure context (https or localhost)
const webcamButton = $("webcam"), snapButton = $("snap");
if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
  webcamButton.disabled = true;
  webcamButton.title = "The webcam needs a secure page (https or localhost) and a browser that allows it.";
}
webcamButton.addEventListener("click", async () => {
  if (stream) return stopWebcam();
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (err) {
    return fail(`webcam not available: ${err.message}`);
  }
  video.srcObject = stream;
  video.hidden = false; canvas.hidden = true; snapButton.hidden = false; liveButton.hidden = false;
  webcamButton.textContent = "Stop webcam";
  setStatus("Webcam on: take a snapshot, or go live.");
});
snapButton.addEventListener("click", () => {
  const shot = document.createElement("canvas");
  shot.width = video.videoWidth; shot.height = video.videoHeight;
  shot.getContext("2d").drawImage(video, 0, 0);
  stopWebcam();
  shot.toBlob((blob) => upload(blob, "webcam.jpg"), "image/jpeg", 0.92);
});
function stopWebcam() {
  live = false;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  video.classList.remove("unseen");
  video.hidden = true; canvas.hidden = false; snapButton.hidden = true; liveButton.hidden = true;
  liveButton.textContent = "Go live";
  webcamButton.textContent = "Use webcam";
}

// ---- live webcam: send a frame, draw the answer over it, send the next (one request at a time,
// so a slow server lowers the frame rate instead of piling up requests)
const liveButton = $("live");
let live = false;
liveButton.addEventListener("click", () => {
  if (live) { live = false; liveButton.textContent = "Go live"; return; }
  live = true;
  liveButton.textContent = "Stop live";
  results.dataset.frames = "0";
  liveLoop();
});
async function liveLoop() {
  const shot = document.createElement("canvas");
  // The canvas shows each answered frame; the video keeps playing unseen (a hidden one may stop).
  canvas.hidden = false;
  video.classList.add("unseen");
  while (live && stream) {
    shot.width = video.videoWidth || 640; shot.height = video.videoHeight || 480;
    shot.getContext("2d").drawImage(video, 0, 0, shot.width, shot.height);
    const blob = await new Promise((resolve) => shot.toBlob(resolve, "image/jpeg", 0.85));
    const t0 = performance.now();
    let data;
    try {
      data = await request(blob, "live.jpg");
    } catch (err) {
      fail(err.message);
      break;
    }
    canvas.width = shot.width; canvas.height = shot.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(shot, 0, 0);
    await drawHeatmaps(ctx, data);
    drawBoxes(ctx, data);
    showResults(data);
    results.dataset.frames = String(Number(results.dataset.frames) + 1);
    results.dataset.state = "live";
    setStatus(`live: ${data.message} · detector ${data.detector} · ${data.backend} · ${data.ms} ms on the server, `
      + `${Math.round(performance.now() - t0)} ms round trip`);
  }
}

// ---- which model answers (file name only)
fetch("/health").then((r) => r.json()).then((h) => {
  const file = String(h.checkpoint).split(/[\\/]/).pop();
  $("model").textContent = `Model: ${file} · ${h.backend}${h.tta && h.tta !== "none" ? ` + ${h.tta} TTA` : ""} · classes: ${h.class_names.join(", ")}`;
}).catch(() => {});

// ---- an empty canvas says what to do
(function hint() {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#f5f7fa"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#65758b"; ctx.font = "18px system-ui, sans-serif"; ctx.textAlign = "center";
  ctx.fillText("Drop a photo here", canvas.width / 2, canvas.height / 2);
})();
