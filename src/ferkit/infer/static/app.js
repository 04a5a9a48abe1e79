// ferkit page: upload a photo (or a webcam snapshot), draw the faces, show per-face bar charts.
// Plain JS, no external files: the page works offline.
"use strict";

const COLORS = {  // same as ferkit/infer/draw.py
  angry: "#dc322f", disgust: "#859900", fear: "#6c71c4", happy: "#eeb400",
  neutral: "#93a1a1", sad: "#268bd2", surprise: "#d33682",
};
const $ = (id) => document.getElementById(id);
const canvas = $("photo"), video = $("video"), results = $("results"), statusLine = $("status");
let stream = null;

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show this file"));
    img.src = URL.createObjectURL(blob);
  });
}

async function upload(blob, name) {
  setStatus("Predicting…");
  results.dataset.state = "busy";
  results.replaceChildren();
  const form = new FormData();
  form.append("file", blob, name);
  let response, data;
  try {
    response = await fetch("/predict", { method: "POST", body: form });
    data = await response.json();
  } catch (err) {
    return fail(`request failed: ${err.message}`);
  }
  if (!response.ok) return fail(`${response.status}: ${data.detail}`);
  try {
    drawPhoto(await loadImage(blob), data);
  } catch (err) {
    drawPlaceholder(data);
  }
  showResults(data);
  setStatus(`${name}: ${data.message} (${data.width}×${data.height})`);
  results.dataset.state = "done";
}

function fail(message) {
  setStatus(message, true);
  results.dataset.state = "error";
}

function colorOf(label) { return COLORS[label] || "#2f6fdf"; }

function drawPhoto(img, data) {
  canvas.width = data.width;
  canvas.height = data.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, data.width, data.height);
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
      + "try a photo where the face is larger and looks at the camera.";
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
  video.hidden = false; canvas.hidden = true; snapButton.hidden = false;
  webcamButton.textContent = "Stop webcam";
  setStatus("Webcam on: take a snapshot.");
});
snapButton.addEventListener("click", () => {
  const shot = document.createElement("canvas");
  shot.width = video.videoWidth; shot.height = video.videoHeight;
  shot.getContext("2d").drawImage(video, 0, 0);
  stopWebcam();
  shot.toBlob((blob) => upload(blob, "webcam.jpg"), "image/jpeg", 0.92);
});
function stopWebcam() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  video.hidden = true; canvas.hidden = false; snapButton.hidden = true;
  webcamButton.textContent = "Use webcam";
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
