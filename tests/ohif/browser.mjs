// What both browser scripts need: headless Chromium as the tests run it, a step runner that
// times each step and takes its screenshot, and the canvas pixel counts that tell an image
// (grey) from a segmentation overlay (coloured).
import { chromium } from 'playwright-core';
import path from 'node:path';
import fs from 'node:fs';

export const STEP_TIMEOUT_MS = 90000;

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
}

// A browser context whose MONAI Label panel talks to `server`; page errors go to `findings.errors`.
export async function openPage(browser, server, findings) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.addCookies([{ name: 'MONAILABEL_SERVER_URL', value: `${server}/`, url: server }]);
  const page = await context.newPage();
  page.on('pageerror', (error) => findings.errors.push(String(error).slice(0, 300)));
  return page;
}

export function stepRunner(findings, outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  return async function step(name, page, action) {
    const started = Date.now();
    try {
      findings.steps[name] = { ...(await action()), seconds: (Date.now() - started) / 1000 };
    } catch (error) {
      findings.steps[name] = { error: String(error).slice(0, 800), seconds: (Date.now() - started) / 1000 };
    }
    await page.screenshot({ path: path.join(outDir, `${name}.png`) });
    return !findings.steps[name].error;
  };
}

// `indent` 0 for findings that hold voxel lists (one line instead of tens of thousands).
export function writeFindings(findings, outDir, indent = 1) {
  fs.writeFileSync(path.join(outDir, 'findings.json'), JSON.stringify(findings, null, indent || undefined) + '\n');
  console.log(JSON.stringify(findings));
}

// Pixels of every cornerstone canvas: how many are not black, how many are coloured.
export async function canvasPixels(page) {
  return page.evaluate(() => {
    let drawn = 0, coloured = 0;
    for (const canvas of document.querySelectorAll('canvas.cornerstone-canvas')) {
      if (!canvas.width || !canvas.height) continue;
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
        if (r + g + b > 30) drawn++;
        if (Math.max(r, g, b) - Math.min(r, g, b) > 40) coloured++;
      }
    }
    return { drawn, coloured };
  });
}

export async function waitForPixels(page, test) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let pixels = await canvasPixels(page);
  while (!test(pixels) && Date.now() < deadline) {
    await page.waitForTimeout(500);
    pixels = await canvasPixels(page);
  }
  return pixels;
}

// The MONAI Label panel connects only when its refresh button is clicked.
export async function connectPanel(page, model) {
  const urlBox = page.locator('#monailabelServerURL');
  await urlBox.waitFor({ timeout: STEP_TIMEOUT_MS });
  await urlBox.locator('xpath=ancestor::tr[1]').locator('button').click();
  const option = page.locator(`select.selectBox option[value="${model}"], select.selectBox option:text-is("${model}")`);
  await option.first().waitFor({ state: 'attached', timeout: STEP_TIMEOUT_MS });
  return page.locator('select.selectBox').first().locator('option').allInnerTexts();
}

// Auto-Segmentation tab -> model -> Run; resolves once the overlay is drawn.
export async function runAutoSegmentation(page, model) {
  await page.getByText('Auto-Segmentation', { exact: true }).first().click();
  const selector = page.locator('.modelSelector').filter({ has: page.locator(`option:text-is("${model}")`) }).first();
  await selector.locator('select.selectBox').selectOption({ label: model });
  const before = await canvasPixels(page);
  const started = Date.now();
  await selector.getByRole('button', { name: 'Run' }).click();
  const after = await waitForPixels(page, (p) => p.coloured > before.coloured + 200);
  return { before, after, overlay_seconds: (Date.now() - started) / 1000 };
}
