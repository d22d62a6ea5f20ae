// The annotator's whole loop in the OHIF viewer the server serves, in headless Chromium:
// (sign in) -> open a study in the MONAI Label mode -> Auto-Segmentation -> erase part of the
// proposal with OHIF's eraser -> Export DICOM SEG (stored in the PACS through the server's
// proxy) -> Update Model (as an admin, with few epochs set in the panel's Options) and its
// progress -> Next Sample with strategy `uncertain`, which opens the scan the server hands out.
// It reads the labelmap OHIF holds before and after the edit, so the pytest test
// (tests/test_ohif_viewer.py) can compare the stored SEG with it voxel by voxel.
//
// node annotator_loop.mjs CONFIG_JSON   (keys: server, study, model, out_dir, train_options,
//                                        users: {annotator: {user, token}, admin: {...}} or absent)
import fs from 'node:fs';
import path from 'node:path';
import { connectPanel, launch, openPage, runAutoSegmentation, stepRunner, waitForPixels, writeFindings,
         STEP_TIMEOUT_MS } from './browser.mjs';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { server, study, model } = config;
const findings = { steps: {}, errors: [] };
const step = stepRunner(findings, config.out_dir);
const SEG_DESCRIPTION = 'muscle corrected in OHIF';
const viewerUrl = (studyUid) => `${server}/ohif/monai-label?StudyInstanceUIDs=${studyUid}`;

// The labelmap OHIF shows (segmentation '1', made by the MONAI Label panel) and its grid.
async function labelmap(page) {
  return page.evaluate(() => {
    const volume = window.services.segmentationService.getLabelmapVolume('1');
    if (!volume) return null;
    const data = volume.voxelManager.getCompleteScalarDataArray();
    const foreground = [];
    for (let i = 0; i < data.length; i++) if (data[i]) foreground.push(i);
    return { dimensions: Array.from(volume.dimensions), spacing: Array.from(volume.spacing),
             origin: Array.from(volume.origin), direction: Array.from(volume.direction), foreground };
  });
}

// A stroke with the eraser across the first muscle pixel from the top of the axial view (the
// abdominal wall), in page coordinates, and where it lies in the labelmap's voxel grid.
async function eraseStroke(page, lengthPx) {
  const geometry = await page.evaluate((length) => {
    const viewport = window.cornerstone.getRenderingEngines()[0].getViewport('mpr-axial');
    const canvas = viewport.canvas;
    const context = canvas.getContext('2d');
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const scale = canvas.width / canvas.clientWidth;
    let hit = null;
    for (let y = 0; y < canvas.height && !hit; y++) {
      for (let x = 0; x < canvas.width; x++) {
        const i = 4 * (y * canvas.width + x);
        if (Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 40) {
          hit = [x / scale, y / scale + 4];  // just inside the muscle
          break;
        }
      }
    }
    if (!hit) return null;
    const volume = window.services.segmentationService.getLabelmapVolume('1');
    const points = [[hit[0] - length / 2, hit[1]], [hit[0] + length / 2, hit[1]]];
    const rect = canvas.getBoundingClientRect();
    return {
      page: points.map(([x, y]) => [rect.left + x, rect.top + y]),
      world: points.map((p) => Array.from(viewport.canvasToWorld(p))),
      index: points.map((p) => Array.from(volume.imageData.worldToIndex(viewport.canvasToWorld(p)))),
    };
  }, lengthPx);
  if (!geometry) throw new Error('no muscle drawn in the axial view to erase');
  const [[x0, y], [x1]] = geometry.page;
  await page.mouse.move(x0, y);
  await page.mouse.down();
  await page.mouse.move(x1, y, { steps: 12 });
  await page.mouse.up();
  return geometry;
}

async function signIn(page, who, shot) {
  await page.goto(viewerUrl(study));  // without a cookie the server answers with its sign-in form
  await page.locator('input[name="username"]').waitFor({ timeout: STEP_TIMEOUT_MS });
  const form = { before: await page.locator('body').innerText() };
  await page.screenshot({ path: path.join(config.out_dir, shot) });
  await page.locator('input[name="username"]').fill(who.user);
  await page.locator('input[name="token"]').fill(who.token);
  await Promise.all([page.waitForURL(/\/ohif\/monai-label/), page.getByRole('button', { name: 'Sign in' }).click()]);
  const cookie = (await page.context().cookies()).find((c) => c.name === 'sarcopenia_token');
  return { ...form, cookie: cookie && { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite },
           script_sees_cookie: (await page.evaluate(() => document.cookie)).includes('sarcopenia_token') };
}

async function openStudy(page) {
  await page.goto(viewerUrl(study));
  const hide = page.getByRole('button', { name: 'Confirm and Hide' });  // the "investigational use" banner
  const pixels = await waitForPixels(page, (p) => p.drawn > 1000);
  if (await hide.count()) await hide.click();
  return { pixels, models: await connectPanel(page, model) };
}

// Back to the MONAI Label panel, which reconnects only when its refresh button is clicked.
async function monaiLabelPanel(page) {
  await page.locator('[data-cy="monailabel-btn"]').click();
  return connectPanel(page, model);
}

// Clicks Update Model; resolves with the server's answer to the panel's POST /train/.
async function clickUpdateModel(page) {
  const answer = page.waitForResponse((r) => r.url().endsWith('/train/') && r.request().method() === 'POST');
  await page.getByRole('button', { name: 'Update Model' }).click();
  const response = await answer;
  return { status: response.status(), body: await response.json().catch(() => null) };
}

// Whether the training task `taskId` has not ended yet. Asked by task id, not with
// check_if_running: that counts training processes, and a task just submitted has none yet.
async function trainingUnfinished(page, taskId) {
  return page.evaluate(async (id) => {
    const tasks = await (await fetch('/train/?all=true')).json();
    const task = tasks.find((t) => t.id === id);
    return !task || ['SUBMITTED', 'RUNNING'].includes(task.status);
  }, taskId);
}

const browser = await launch();
try {
  const users = config.users;
  const annotatorPage = await openPage(browser, server, findings);
  if (users) await step('00_sign_in_annotator', annotatorPage, () => signIn(annotatorPage, users.annotator, '00_sign_in_form.png'));
  await step('01_study_open', annotatorPage, () => openStudy(annotatorPage));
  await step('02_auto_segmentation', annotatorPage, async () => {
    const drawn = await runAutoSegmentation(annotatorPage, model);
    return { ...drawn, proposal: await labelmap(annotatorPage) };
  });
  await step('03_erase', annotatorPage, async () => {
    await annotatorPage.locator('[data-cy="panelSegmentationWithTools-btn"]').click();
    await annotatorPage.locator('[data-cy="Eraser"]').click();
    const radius_mm = Number(await annotatorPage.locator('input[type="number"]').first().inputValue());
    const before = findings.steps['02_auto_segmentation'].proposal.foreground.length;
    const stroke = await eraseStroke(annotatorPage, 30);
    let edited = await labelmap(annotatorPage);
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (edited.foreground.length === before && Date.now() < deadline) {
      await annotatorPage.waitForTimeout(200);
      edited = await labelmap(annotatorPage);
    }
    return { radius_mm, stroke, edited };
  });
  await step('04_export_dicom_seg', annotatorPage, async () => {
    await annotatorPage.locator('div:has(> button[role="combobox"]) > button[aria-haspopup="menu"]').first().click();
    await annotatorPage.getByRole('menuitem', { name: 'Export & Download' }).hover();
    await annotatorPage.getByRole('menuitem', { name: 'Export DICOM SEG' }).click();
    await annotatorPage.locator('input[type="text"], input:not([type])').last().fill(SEG_DESCRIPTION);
    const stored = annotatorPage.waitForResponse((r) => r.url().includes('/proxy/dicom/') && r.request().method() === 'POST');
    await annotatorPage.getByRole('button', { name: 'Save', exact: true }).click();
    const response = await stored;
    return { status: response.status(), url: new URL(response.url()).pathname, description: SEG_DESCRIPTION };
  });

  let adminPage = annotatorPage;
  if (users) {  // annotators may not train; the admin works in a browser of their own
    await step('05_update_model_refused_for_annotator', annotatorPage, async () => {
      await monaiLabelPanel(annotatorPage);
      const answer = await clickUpdateModel(annotatorPage);
      await annotatorPage.getByText('Failed to RUN training').first().waitFor({ timeout: STEP_TIMEOUT_MS });
      return { ...answer, notice: 'Failed to RUN training' };
    });
    adminPage = await openPage(browser, server, findings);
    await step('06_sign_in_admin', adminPage, async () => ({ ...(await signIn(adminPage, users.admin, '06_sign_in_form.png')),
                                                            ...(await openStudy(adminPage)) }));
  }

  await step('07_update_model', adminPage, async () => {
    await monaiLabelPanel(adminPage);
    await adminPage.getByText('Options / Configurations').click();
    const dialog = adminPage.locator('.optionsForm');
    await dialog.locator('select[name="selectSection"]').selectOption('train');
    await dialog.locator('select[name="selectName"]').selectOption(model);
    for (const [key, value] of Object.entries(config.train_options)) {
      await dialog.locator(`[id="train${model}${key}"]`).fill(String(value));
    }
    await adminPage.getByRole('button', { name: 'Confirm' }).click();
    const answer = await clickUpdateModel(adminPage);
    const button = await adminPage.getByRole('button', { name: 'Stop Training' }).count();
    const progress = [];
    const deadline = Date.now() + 4 * STEP_TIMEOUT_MS;
    const taskId = answer.body.muscle_seg.result.id;
    while (await trainingUnfinished(adminPage, taskId)) {
      if (Date.now() > deadline) throw new Error(`training task ${taskId} did not end in time`);
      await adminPage.locator('#monailabelServerURL').locator('xpath=ancestor::tr[1]').locator('button').click();
      progress.push(await adminPage.locator('.optionsTable').first().innerText());
      await adminPage.waitForTimeout(1000);
    }
    await adminPage.locator('#monailabelServerURL').locator('xpath=ancestor::tr[1]').locator('button').click();
    await adminPage.getByText('Train Acc:').waitFor({ timeout: STEP_TIMEOUT_MS });
    await adminPage.waitForTimeout(500);
    const finished = await adminPage.locator('.optionsTable').first().innerText();
    return { ...answer, stop_button_shown: button > 0, progress, finished };
  });

  await step('08_next_sample', adminPage, async () => {
    const strategy = adminPage.locator('select.actionInput').filter({ has: adminPage.locator('option[value="uncertain"]') });
    await strategy.selectOption('uncertain');
    const answer = adminPage.waitForResponse((r) => r.url().includes('/activelearning/') && r.request().method() === 'POST');
    await adminPage.getByRole('button', { name: 'Next Sample' }).click();
    const response = await answer;
    const served = await response.json();
    adminPage.once('dialog', (dialog) => dialog.accept());  // "This action will reload current page"
    await adminPage.locator('.nextSampleForm').getByRole('button', { name: 'OK' }).click();
    await adminPage.waitForURL((url) => url.href.endsWith(served.StudyInstanceUID), { timeout: STEP_TIMEOUT_MS });
    const pixels = await waitForPixels(adminPage, (p) => p.drawn > 1000);
    return { url: new URL(response.url()).pathname, status: response.status(), served, opened: adminPage.url(), pixels };
  });
} finally {
  await browser.close();
}
writeFindings(findings, config.out_dir, 0);
