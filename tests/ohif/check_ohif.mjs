// Drives the OHIF v3 viewer that the MONAI Label server serves at /ohif/, in headless
// Chromium, the way an annotator uses it: study list -> MONAI Label mode on a study ->
// panel connects -> Auto-Segmentation with our model -> overlay drawn. Also opens a
// JPEG 2000 study (decoded in the browser, fetched through the server's DICOMweb proxy).
// Prints one JSON object of findings (also OUT_DIR/findings.json) and writes a screenshot per step; the pytest test
// (tests/test_ohif_viewer.py) judges them.
//
// node check_ohif.mjs SERVER_URL PLAIN_STUDY_UID JPEG2000_STUDY_UID MODEL OUT_DIR
import { connectPanel, launch, openPage, runAutoSegmentation, stepRunner, waitForPixels, writeFindings,
         STEP_TIMEOUT_MS } from './browser.mjs';

const [server, plainStudy, j2kStudy, model, outDir] = process.argv.slice(2);
const findings = { steps: {}, errors: [] };
const step = stepRunner(findings, outDir);

const browser = await launch();
try {
  const page = await openPage(browser, server, findings);

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

  await step('03_panel_connected', page, async () => ({ models: await connectPanel(page, model) }));

  await step('04_auto_segmentation', page, () => runAutoSegmentation(page, model));

  await step('05_jpeg2000_study', page, async () => {
    await page.goto(`${server}/ohif/viewer?StudyInstanceUIDs=${j2kStudy}`);
    const pixels = await waitForPixels(page, (p) => p.drawn > 1000);
    return { pixels };
  });
} finally {
  await browser.close();
}
writeFindings(findings, outDir);
