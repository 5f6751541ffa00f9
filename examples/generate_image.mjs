// The seed's JavaScript example, unchanged, plus the call that runs it (Node 18+: fetch is built in).
import { writeFileSync } from "node:fs";

async function mfluxGenerateImage(prompt, width = 1024, height = 1024) {
// mflux image generation via fleet router
const mflux_resp = await fetch("http://localhost:11435/api/generate-image", {
method: "POST",
headers: { "Content-Type": "application/json" },
body: JSON.stringify({
model: "z-image-turbo", prompt, width, height, steps: 4, quantize: 8,
}),
});
if (!mflux_resp.ok) throw new Error((await mflux_resp.json()).error);
return Buffer.from(await mflux_resp.arrayBuffer());
}

const png = await mfluxGenerateImage(process.argv.slice(2).join(" ") || "a neon-lit Tokyo alley at midnight");
writeFileSync("mflux_output_js.png", png);
console.log(`wrote mflux_output_js.png (${png.length} bytes)`);
