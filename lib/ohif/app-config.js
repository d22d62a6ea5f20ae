// OHIF configuration served at /ohif/app-config.js in place of the one MONAI Label 0.8.5
// bundles (lib/endpoints/ohif_viewer.py). Same PACS through the server's DICOMweb proxy;
// one change to the MONAI Label mode: OHIF's own segmentation panel (brush, eraser,
// "Export DICOM SEG") sits beside the MONAI Label panel, so an annotator corrects the
// proposal and stores it in the PACS as the final label without leaving the mode.
// Plain JavaScript, no build: OHIF takes a mode object here and the first mode with an
// id wins, so this wrapper replaces the bundled mode of the same id.
const MONAI_LABEL_MODE = '@ohif/mode-monai-label';
const SEGMENTATION_PANEL = '@ohif/extension-cornerstone.panelModule.panelSegmentationWithTools';

// The bundled MONAI Label mode lists 'BrushTools' and 'Shapes' in its segmentation toolbox
// but never adds those buttons (their line is commented out upstream), so opening OHIF's
// segmentation panel there crashes the viewer: these are the segmentation mode's buttons.
function brushButton(id, label, icon, circle, sphere) {
  return {
    id,
    icon,
    label,
    evaluate: { name: 'evaluate.cornerstone.segmentation', toolNames: [circle, sphere] },
    options: [
      {
        name: 'Radius (mm)', id: `${id.toLowerCase()}-radius`, type: 'range', min: 0.5, max: 99.5, step: 0.5,
        value: BRUSH_RADIUS_MM, commands: { commandName: 'setBrushSize', commandOptions: { toolNames: [circle, sphere] } },
      },
      {
        name: 'Shape', type: 'radio', id: `${id.toLowerCase()}-mode`, value: circle,
        values: [{ value: circle, label: 'Circle' }, { value: sphere, label: 'Sphere' }],
        commands: 'setToolActiveToolbar',
      },
    ],
  };
}
const BRUSH_RADIUS_MM = 10;
const BRUSH_TOOLS = {
  id: 'BrushTools',
  uiType: 'ohif.buttonGroup',
  props: {
    groupId: 'BrushTools',
    items: [
      brushButton('Brush', 'Brush', 'icon-tool-brush', 'CircularBrush', 'SphereBrush'),
      brushButton('Eraser', 'Eraser', 'icon-tool-eraser', 'CircularEraser', 'SphereEraser'),
    ],
  },
};
const SHAPES = {
  id: 'Shapes',
  uiType: 'ohif.radioGroup',
  props: {
    label: 'Shapes',
    icon: 'icon-tool-shape',
    evaluate: { name: 'evaluate.cornerstone.segmentation', toolNames: ['CircleScissor', 'SphereScissor', 'RectangleScissor'] },
    options: [
      {
        name: 'Shape', type: 'radio', value: 'CircleScissor', id: 'shape-mode',
        values: [
          { value: 'CircleScissor', label: 'Circle' },
          { value: 'SphereScissor', label: 'Sphere' },
          { value: 'RectangleScissor', label: 'Rectangle' },
        ],
        commands: 'setToolActiveToolbar',
      },
    ],
  },
};

// OHIF 3.10.0-beta.5: the panel's "Export DICOM SEG" runs the SEG extension's
// storeSegmentation (the last command of that name wins) without the data source to store
// into, and fails ("reading 'store'"): give it the active one, the PACS behind the proxy.
function storeIntoActiveDataSource({ commandsManager, extensionManager }) {
  const context = commandsManager.getContext('SEGMENTATION');
  const store = context && context.storeSegmentation;
  if (!store || store.storesIntoActiveDataSource) return;
  context.storeSegmentation = {
    ...store,
    storesIntoActiveDataSource: true,
    commandFn: (options) => store.commandFn({ dataSource: extensionManager.getActiveDataSource()[0], ...options }),
  };
}

// The bundled MONAI Label panel's strategy list calls an onChangeStrategy handler that its
// build does not define, so "Next Sample" always asks for `random`. Until upstream fixes it,
// a change of that list is handed to the panel component's own state, as the handler would.
function passStrategyChoiceToPanel(event) {
  const list = event.target;
  if (!(list instanceof HTMLSelectElement) || !list.closest('.monaiLabelPanel')) return;
  const fiberKey = Object.keys(list).find((key) => key.startsWith('__reactFiber$'));
  for (let fiber = fiberKey && list[fiberKey]; fiber; fiber = fiber.return) {
    const component = fiber.stateNode;
    if (component && component.setState && component.state && 'strategy' in component.state) {
      component.setState({ strategy: list.value });
      return;
    }
  }
}
document.addEventListener('change', passStrategyChoiceToPanel, true);

const monaiLabelModeWithSegmentationPanel = {
  id: MONAI_LABEL_MODE,
  modeFactory: async ({ modeConfiguration, loadModules }) => {
    const [bundled] = await loadModules([MONAI_LABEL_MODE]);
    const mode = await bundled.modeFactory({ modeConfiguration, loadModules });
    const bundledOnModeEnter = mode.onModeEnter;
    mode.onModeEnter = (args) => {
      bundledOnModeEnter(args);
      args.servicesManager.services.toolbarService.addButtons([BRUSH_TOOLS, SHAPES]);
      storeIntoActiveDataSource(args);
    };
    mode.routes = mode.routes.map((route) => ({
      ...route,
      layoutTemplate: (args) => {
        const layout = route.layoutTemplate(args);
        layout.props.rightPanels = [...layout.props.rightPanels, SEGMENTATION_PANEL];
        return layout;
      },
    }));
    return mode;
  },
};

window.config = {
  routerBasename: '/ohif/',
  showStudyList: true,
  extensions: [],
  modes: [monaiLabelModeWithSegmentationPanel],
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'dicomweb',
  useSharedArrayBuffer: 'FALSE',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'PACS (through the MONAI Label server)',
        name: 'pacs',
        wadoUriRoot: '/proxy/dicom/wado',
        qidoRoot: '/proxy/dicom/qido',
        wadoRoot: '/proxy/dicom/wado',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: false,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        dicomUploadEnabled: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
