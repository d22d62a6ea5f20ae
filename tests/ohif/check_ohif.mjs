// Drives the OHIF v3 viewer that the MONAI Label server serves at /ohif/, in headless
// Chromium, the way an annotator uses it: study list -> MONAI Label mode on a study ->
// panel connects -> Auto-Segmentation with our model -> overlay drawn. Also opens a
// JPEG 2000 study (decoded in the browser, fetched through the server's DICOMweb proxy).
// Prints one JSON object of findings (also OUT_DIR/findings.json) and writes a screenshot per step; the pytest test
// (tests/test_ohif_viewer.py) judges them.
//
// node check_ohif.mjs SERVER_URL PLAIN_STUDY_UID JPEG2000_STUDY_UID MODEL OUT_DIR
import { chromium } from 'playwright-core';
import path from 'node:path';
import fs from 'node:fs';

const [server, plainStudy, j2kStudy, model, outDir] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT_MS = 90000;
const findings = { steps: {}, errors: [] };
fs.mkdirSync(outDir, { recursive: true });

// Pixels of every cornerstone canvas: how many are not black, how many are coloured
// (the image is grey; the segmentation overlay is not).
async function canvasPixels(page) {
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

async function waitForPixels(page, test) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let pixels = await canvasPixels(page);
  while (!test(pixels) && Date.now() < deadline) {
    await page.waitForTimeout(500);
    pixels = await canvasPixels(page);
  }
  return pixels;
}

async function step(name, page, action) {
  const started = Date.now();
  try {
    findings.steps[name] = { ...(await action()), seconds: (Date.now() - started) / 1000 };
  } catch (error) {
    findings.steps[name] = { error: String(error).slice(0, 500), seconds: (Date.now() - started) / 1000 };
  }
  await page.screenshot({ path: path.join(outDir, `${name}.png`) });
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  // The panel's server URL; it defaults to port 8000 of the page's host.
  await context.addCookies([{ name: 'MONAILABEL_SERVER_URL', value: `${server}/`, url: server }]);
  const page = await context.newPage();
  page.on('pageerror', (error) => findings.errors.push(String(error).slice(0, 300)));

  await step('01_study_list', page, async () => {
    await page.goto(`${server}/ohif/`);
    await page.getByText(/\d+\s*Studies/).first().waitFor({ timeout: STEP_TIMEOUT_MS });
    await page.getByText('Phantom,', { exact: false }).first().waitFor({ timeout: STEP_TIMEOUT_MS });
    const hide = page.getByRole('button', { name: 'Confirm and Hide' });  // the "investigational use" banner
    if (await hide.count()) await hide.click();
    const text = await page.locator('body').innerText();
    const studies = Number((text.match(/(\d+)\s*Studies/) || [])[1]);
    // OHIF shows the DICOM name Phantom^<case id> as "Phantom, <case id>"
    return { studies, patients: [...new Set([...text.matchAll(/Phantom, (\S+)/g)].map((m) => m[1]))].sort() };
  });

  await step('02_study_open', page, async () => {
    await page.goto(`${server}/ohif/monai-label?StudyInstanceUIDs=${plainStudy}`);
    const pixels = await waitForPixels(page, (p) => p.drawn > 1000);
    return { pixels };
  });

  await step('03_panel_connected', page, async () => {
    const urlBox = page.locator('#monailabelServerURL');
    await urlBox.waitFor({ timeout: STEP_TIMEOUT_MS });
    await urlBox.locator('xpath=ancestor::tr[1]').locator('button').click();  // the panel's refresh button
    const option = page.locator(`select.selectBox option[value="${model}"], select.selectBox option:text-is("${model}")`);
    await option.first().waitFor({ state: 'attached', timeout: STEP_TIMEOUT_MS });
    const models = await page.locator('select.selectBox').first().locator('option').allInnerTexts();
    return { models };
  });

  await step('04_auto_segmentation', page, async () => {
    await page.getByText('Auto-Segmentation', { exact: true }).first().click();
    const selector = page.locator('.modelSelector').filter({ has: page.locator(`option:text-is("${model}")`) }).first();
    await selector.locator('select.selectBox').selectOption({ label: model });
    const before = await canvasPixels(page);
    const started = Date.now();
    await selector.getByRole('button', { name: 'Run' }).click();
    const after = await waitForPixels(page, (p) => p.coloured > before.coloured + 200);
    return { before, after, overlay_seconds: (Date.now() - started) / 1000 };
  });

  await step('05_jpeg2000_study', page, async () => {
    await page.goto(`${server}/ohif/viewer?StudyInstanceUIDs=${j2kStudy}`);
    const pixels = await waitForPixels(page, (p) => p.drawn > 1000);
    return { pixels };
  });
} finally {
  await browser.close();
}
fs.writeFileSync(path.join(outDir, 'findings.json'), JSON.stringify(findings, null, 1) + '\n');
console.log(JSON.stringify(findings));
