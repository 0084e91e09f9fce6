"""Medical formats: DICOM (pydicom-written), NIfTI (nibabel), 16-bit PNG/TIFF,
windows, and one clear error per bad input (issue 13)."""

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from kerastransfer.data import medical  # noqa: E402
from kerastransfer.data.medical import read_dicom_frames, read_image  # noqa: E402
from kerastransfer.runtime.preprocess import apply_window, resolve_window  # noqa: E402


def write_dicom(path, pixels, *, slope=1.0, intercept=0.0, photometric="MONOCHROME2",
                signed=False, syntax=None, pixel_data=True):
    """A 16-bit DICOM written with pydicom (FileDataset, Explicit VR LE)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = "P1"
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if pixel_data:
        ds.PixelData = pixels.astype("int16" if signed else "uint16").tobytes()
    if syntax is not None:
        ds.compress(syntax, encoding_plugin="pydicom") if pixel_data else None
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_ct_dicom_in_hounsfield_units_and_windowed(tmp_path):
    raw = np.arange(64 * 48, dtype="uint16").reshape(48, 64) % 4000
    path = write_dicom(tmp_path / "ct.dcm", raw, slope=1.0, intercept=-1024.0)
    hu = read_image(path)
    assert hu.shape == (48, 64, 1) and hu.dtype == np.float32
    np.testing.assert_array_equal(hu[..., 0], raw.astype("float32") - 1024.0)
    lung = read_image(path, window="lung")  # center -600, width 1500
    expected = np.clip((hu - (-600 - 750)) / 1500, 0, 1) * 255
    np.testing.assert_allclose(lung, expected, rtol=1e-6, atol=1e-4)
    assert lung.max() == 255.0 and abs(lung.min() - (-1024 + 1350) / 1500 * 255) < 1e-3
    np.testing.assert_allclose(read_image(path, window=(40, 400)),
                               apply_window(hu, "soft_tissue"), atol=1e-4)


def test_slope_and_signed_pixels(tmp_path):
    raw = np.array([[-1000, 0], [5, 3000]], dtype="int16")
    path = write_dicom(tmp_path / "s.dcm", raw, slope=0.5, intercept=10.0, signed=True)
    np.testing.assert_allclose(read_image(path)[..., 0], raw * 0.5 + 10.0)


def test_monochrome1_is_inverted(tmp_path):
    raw = np.array([[0, 100], [65535, 1000]], dtype="uint16")
    m1 = read_image(write_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1"))
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", 65535 - raw))
    np.testing.assert_array_equal(m1, m2)
    assert m1[0, 0, 0] == 65535.0  # stored 0 is white in MONOCHROME1


def test_multiframe_refused_or_split(tmp_path):
    raw = np.stack([np.full((4, 5), i * 10, "uint16") for i in range(3)])
    path = write_dicom(tmp_path / "mf.dcm", raw, intercept=-5.0)
    with pytest.raises(ValueError, match="3 frames.*frame="):
        read_image(path)
    frames = read_dicom_frames(path)
    assert frames.shape == (3, 4, 5, 1)
    np.testing.assert_array_equal(frames[:, 0, 0, 0], [-5.0, 5.0, 15.0])
    np.testing.assert_array_equal(read_image(path, frame=2)[..., 0],
                                  np.full((4, 5), 15.0))


def test_compressed_syntax_decoded(tmp_path):
    from pydicom.uid import RLELossless

    raw = (np.arange(32 * 32, dtype="uint16").reshape(32, 32) * 37) % 60000
    path = write_dicom(tmp_path / "rle.dcm", raw, intercept=-1024.0, syntax=RLELossless)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(read_image(path)[..., 0], raw - 1024.0)


def test_jpeg2000_decoded_by_plugin(tmp_path):
    pytest.importorskip("openjpeg")
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

    raw = (np.arange(32 * 32, dtype="uint16").reshape(32, 32) * 11) % 4096
    path = write_dicom(tmp_path / "j2k.dcm", raw)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(JPEG2000Lossless)
    ds.save_as(path)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_array_equal(read_image(path)[..., 0], raw)


def test_unsupported_syntax_named(tmp_path):
    path = write_dicom(tmp_path / "v.dcm", np.zeros((4, 4), "uint16"))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    ds.PixelData = pydicom.encaps.encapsulate([b"\0" * 8])
    ds.save_as(path)
    with pytest.raises(ValueError, match=r"transfer syntax MPEG2.*1\.2\.840\.10008"
                                         r"\.1\.2\.4\.100"):
        read_image(path)


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "sr.dcm", np.zeros((4, 4)), pixel_data=False)
    with pytest.raises(ValueError, match="no pixel data"):
        read_image(path)


def test_nifti_slices_along_axis(tmp_path):
    stored = np.arange(4 * 5 * 6, dtype="int16").reshape(4, 5, 6)
    image = nib.Nifti1Image(stored, affine=np.eye(4))
    image.header.set_slope_inter(2.0, -100.0)  # header scaling: 2 * stored - 100
    path = tmp_path / "v.nii.gz"
    nib.save(image, str(path))
    volume = stored * 2.0 - 100.0
    s = medical.read_volume_slices(path, axis=2)
    assert s.shape == (6, 4, 5, 1)
    np.testing.assert_allclose(s[..., 0], np.moveaxis(volume, 2, 0), atol=1e-3)
    np.testing.assert_allclose(read_image(path, axis=0, slice_index=1)[..., 0],
                               volume[1], atol=1e-3)
    np.testing.assert_allclose(read_image(path)[..., 0], volume[:, :, 3], atol=1e-3)
    four = nib.Nifti1Image(np.stack([volume, -volume], -1), affine=np.eye(4))
    nib.save(four, str(tmp_path / "c.nii"))
    assert read_image(tmp_path / "c.nii").shape == (4, 5, 2)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_png_and_tiff_keep_full_range(tmp_path, suffix):
    from PIL import Image

    raw = (np.arange(40 * 30, dtype="uint32").reshape(30, 40) * 53) % 65536
    path = tmp_path / f"x16{suffix}"
    Image.fromarray(raw.astype("uint16")).save(path)
    image = read_image(path)
    assert image.shape == (30, 40, 1)
    np.testing.assert_array_equal(image[..., 0], raw.astype("float32"))
    assert image.max() > 60000  # not cut to 8 bits


def test_window_errors():
    with pytest.raises(ValueError, match="width must be a finite number > 0"):
        resolve_window((40, 0))
    with pytest.raises(ValueError, match="width must be a finite number > 0"):
        resolve_window((40, -10))
    with pytest.raises(ValueError, match="Unknown window preset.*lung"):
        resolve_window("lungs")
    assert resolve_window("brain") == (40.0, 80.0)
