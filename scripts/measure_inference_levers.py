#!/usr/bin/env python3
"""The two inference levers of issue 14 for YOLOX-Nano, measured (README, "Where the CPU goes"):
a dynamic batch axis (batching frames of several cameras) and an int8 model from ONNX
Runtime's own `quantize_static`, checked against the float model on the shared photos.

Needs, besides the setup venv's packages, `onnx` and `sympy` from PyPI:
    python3 -m venv /tmp/levers && /tmp/levers/bin/pip install onnx onnxruntime==1.32.0 numpy \
        opencv-python-headless sympy
    STREETWATCH_ASSETS=../shared/assets /tmp/levers/bin/python scripts/measure_inference_levers.py dyn
    ... quant all|conv|pct|all-head|all-rr|all-u8u8|all-s8s8   (writes out/levers/yolox_nano_int8_*.onnx)
    ... eval .cache/assets/models/yolox_nano.onnx out/levers/yolox_nano_int8_all.onnx
Times are CPU milliseconds per image, one thread.
"""
import sys, os, time, glob, json
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, cv2, onnx, onnxruntime as ort
from onnx import numpy_helper, helper
import reference_detections as R

SRC = R.find('models/yolox_nano.onnx')
OUT = os.environ.get('LEVERS_OUT', os.path.join(R.ROOT, 'out', 'levers'))
os.makedirs(OUT, exist_ok=True)

def dyn_batch(src, dst):
    m = onnx.load(src)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = 'batch'
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = 'batch'
    reshape_shapes = {n.input[1] for n in m.graph.node if n.op_type == 'Reshape'}
    for n in m.graph.node:
        if n.op_type == 'Constant' and n.output[0] in reshape_shapes:
            a = numpy_helper.to_array(n.attribute[0].t).copy()
            assert a[0] == 1
            a[0] = 0
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(a))
    for init in m.graph.initializer:
        if init.name in reshape_shapes:
            a = numpy_helper.to_array(init).copy(); assert a[0] == 1; a[0] = 0
            init.CopyFrom(numpy_helper.from_array(a, init.name))
    # drop stale value_info shapes
    del m.graph.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, dst)

def photos():
    return [R.find(p) for p in R.photos('images')]

def frames_from_videos(n_per=6):
    out = []
    for v in sorted(sorted(set(glob.glob(os.path.join(R.find('video/real/MANIFEST.md').rsplit('/', 1)[0], '*.mp4'))))):
        cap = cv2.VideoCapture(v)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in range(n_per):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(total * (k + 0.5) / n_per))
            ok, f = cap.read()
            if ok: out.append(f)
    return out

def sess(path, threads=1):
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])

def detect(s, bgr):
    x, t = R.prep_yolox(bgr)
    outs = s.run(None, {'images': x})
    thr = np.full(80, 0.2, dtype=np.float32)
    c = R.decode_yolox(outs, None, thr)
    return nms(c, t, bgr.shape)

def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = ix * iy
    u = (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - i
    return i / u if u > 0 else 0

def nms(cands, t, shape):
    rx, ry, ox, oy = t
    h, w = shape[:2]
    out = []
    for c, s, b in sorted(cands, key=lambda z: -z[1]):
        bb = [min(max((b[0]-ox)/rx, 0), w), min(max((b[1]-oy)/ry, 0), h), min(max((b[2]-ox)/rx, 0), w), min(max((b[3]-oy)/ry, 0), h)]
        if all(not (o[0] == c and iou(o[2], bb) > 0.45) for o in out):
            out.append((c, s, bb))
    return out

def compare(ref, got, iou_min=0.85, ds=0.05):
    matched = 0
    used = set()
    for c, s, b in ref:
        best = None
        for j, (c2, s2, b2) in enumerate(got):
            if j in used or c2 != c: continue
            if iou(b, b2) > iou_min and abs(s - s2) < ds:
                best = j; break
        if best is not None:
            used.add(best); matched += 1
    return matched

def timeit(s, batch=1, n=30):
    x = np.random.RandomState(0).randint(0, 255, (batch, 3, 416, 416)).astype(np.float32)
    for _ in range(3): s.run(None, {'images': x})
    t = time.process_time()
    for _ in range(n): s.run(None, {'images': x})
    return (time.process_time() - t) / n / batch * 1000

if __name__ == '__main__':
    what = sys.argv[1]
    if what == 'dyn':
        dyn_batch(SRC, f'{OUT}/yolox_nano_dyn.onnx')
        s0, s1 = sess(SRC), sess(f'{OUT}/yolox_nano_dyn.onnx')
        print('float b1 ms', timeit(s0))
        for b in (1, 2, 4, 8):
            print('dyn b', b, 'ms/img', timeit(s1, b))
    if what == 'quant':
        from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType, CalibrationMethod
        from onnxruntime.quantization.shape_inference import quant_pre_process
        variant = sys.argv[2]
        imgs = [cv2.imread(p) for p in photos()] + frames_from_videos()
        class Reader(CalibrationDataReader):
            def __init__(self): self.it = iter(imgs)
            def get_next(self):
                f = next(self.it, None)
                return None if f is None else {'images': R.prep_yolox(f)[0]}
        pre = f'{OUT}/pre.onnx'
        if not os.path.exists(pre):
            from onnx import version_converter
            m0 = version_converter.convert_version(onnx.load(SRC), 13)
            onnx.save(m0, f'{OUT}/op13.onnx')
            quant_pre_process(f'{OUT}/op13.onnx', pre)
        m = onnx.load(pre)
        names = [n.name for n in m.graph.node]
        # the head's tail: everything from the per-level Concat (reg, obj, cls) to the output
        tail = [n.name for n in m.graph.node if n.op_type in ('Concat','Reshape','Transpose') and any(k in n.name for k in ('331','364','397','405','413','421','422','423'))]
        # the obj/cls sigmoids feed those concats
        feeders = set()
        prod = {o: n for n in m.graph.node for o in n.output}
        for n in m.graph.node:
            if n.name in tail:
                for i in n.input:
                    if i in prod and prod[i].op_type == 'Sigmoid': feeders.add(prod[i].name)
        convs = set()
        for n in m.graph.node:
            if n.name in feeders or n.name in tail:
                for i in n.input:
                    if i in prod and prod[i].op_type == 'Conv': convs.add(prod[i].name)
        exclude = tail + sorted(feeders)
        if 'head' in variant: exclude += sorted(convs)
        if 'stem' in variant: exclude += [n.name for n in m.graph.node if n.op_type == 'Conv'][:1]
        kw = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                  nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax)
        if variant.startswith('conv'):
            kw['op_types_to_quantize'] = ['Conv']
        if 'rr' in variant: kw['reduce_range'] = True
        if 'u8u8' in variant: kw['weight_type'] = QuantType.QUInt8
        if 's8s8' in variant: kw['activation_type'] = QuantType.QInt8
        if 'pt' in variant: kw['per_channel'] = False
        if variant == 'pct':
            kw['calibrate_method'] = CalibrationMethod.Percentile
        if variant == 'ent':
            kw['calibrate_method'] = CalibrationMethod.Entropy
        dst = f'{OUT}/yolox_nano_int8_{variant}.onnx'
        print('excluding', exclude)
        quantize_static(pre, dst, Reader(), **kw)
        print('wrote', dst)
    if what == 'eval':
        paths = sys.argv[2:]
        ss = [sess(p) for p in paths]
        imgs = [(p, cv2.imread(p)) for p in photos()]
        tot = 0; m = [0]*len(ss); extra=[0]*len(ss)
        for p, f in imgs:
            ref = detect(ss[0], f); tot += len(ref)
            for k, s in enumerate(ss[1:], 1):
                got = detect(s, f)
                mk = compare(ref, got); m[k] += mk; extra[k] += len(got) - mk
        # loose: label + IoU>0.5
        for k, p in enumerate(paths[1:], 1):
            print(p, f'{m[k]}/{tot} strict matched, {extra[k]} unmatched own; ms/img', round(timeit(ss[k]), 2))
        print('float ms/img', round(timeit(ss[0]), 2))
    if what == 'loose':
        paths = sys.argv[2:]
        ss = [sess(p) for p in paths]
        imgs = [(p, cv2.imread(p)) for p in photos()]
        for k in range(1, len(ss)):
            tot=0; mm=0; ds=[]
            for p, f in imgs:
                ref = [d for d in detect(ss[0], f) if d[1] >= 0.4]; got = detect(ss[k], f)
                tot += len(ref); mm += compare(ref, got, 0.5, 0.2)
            print(paths[k], f'score>=0.4: {mm}/{tot} matched at IoU>0.5, |ds|<0.2')
