"""``GET /datastore/image`` (what 3D Slicer downloads) as MONAI Label serves it, except that a
PACS series that is not one CT volume answers 422 with the reason instead of a bare 500."""

from fastapi import APIRouter, Depends
from monailabel.config import settings
from monailabel.endpoints.datastore import download_image
from monailabel.endpoints.user.auth import RBAC, User

from lib.endpoints.invalid_input import invalid_ct_as_422


def router() -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.get("/datastore/image")
    async def image(image: str, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
        with invalid_ct_as_422():
            return download_image(image)

    return routes
